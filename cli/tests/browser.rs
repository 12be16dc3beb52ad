//! The web viewer in a real browser: Debian's chromium driven over WebDriver (chromedriver,
//! started here on a free port) against `tracing-postgres serve` on a seeded database.
//!
//! Without chromium and chromedriver these tests fail, saying so: `./scripts/test` installs
//! them (`chromium`, `chromium-driver`). Screenshots of each page are written to
//! `target/tmp/screenshots/`.
use tracing_postgres_test_support as common;

mod viewer;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fresh_db;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tracing_postgres::*;
use uuid::Uuid;
use viewer::{FLUSH, Seeded, seed, serve};

/// How long an element the test waits for may take to appear (a page load, a poll of the
/// live list every 2 s): a bound on waiting, not a measured time.
const APPEAR: Duration = Duration::from_secs(30);

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver on a free port, and a browser session on it; both ended on drop.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn browser() -> Browser {
    let driver = find_program("CHROMEDRIVER", &["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver not found: install Debian's chromium and chromium-driver \
             (./scripts/test does) or set CHROMEDRIVER"
        )
    });
    let chromium =
        find_program("CHROME_BIN", &["chromium", "chromium-browser"]).unwrap_or_else(|| {
            panic!("chromium not found: install Debian's chromium or set CHROME_BIN")
        });
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
    let profile = std::env::temp_dir().join(format!("tpg-chromium-{}", Uuid::now_v7().simple()));
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + APPEAR;
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session on {url}: {e}"),
        }
    };
    Browser {
        client,
        driver: child,
        profile,
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(APPEAR)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let url = c.current_url().await;
            let body = c.source().await.unwrap_or_default();
            panic!("no {css} on {url:?}: {e}\n{body}")
        }
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn text_of(c: &Client, css: &str) -> String {
    wait_css(c, css).await.text().await.unwrap()
}

#[tokio::test]
async fn list_trace_span_citation_session_document_usage_and_live() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let s: Seeded = seed(&p);
    let big = big_trace(&p, 50, 99);
    assert!(guard.flush(FLUSH));
    let srv = serve(&db.url, &[], &[]);
    let b = browser().await;
    let c = &b.client;

    // The list, newest first: the ingestion, then the chat request.
    c.goto(&format!("{}/", srv.base)).await.unwrap();
    wait_css(c, "#traces tbody tr").await;
    let names = js(c, "return [...document.querySelectorAll('#traces tbody tr td:first-child')].map(e => e.innerText)").await;
    assert_eq!(
        names,
        json!(["big trace", "ingest refund-policy.pdf", "POST /chat"])
    );
    let spans = text_of(c, &format!("tr[data-id='{}'] td:last-child", s.chat_trace)).await;
    assert_eq!(spans, "4");
    screenshot(c, "traces").await;

    // A filter in the URL.
    c.goto(&format!("{}/?op=chat&model=gpt-4o-mini", srv.base))
        .await
        .unwrap();
    wait_css(c, "#traces").await;
    let rows = js(
        c,
        "return document.querySelectorAll('#traces tbody tr').length",
    )
    .await;
    assert_eq!(rows, json!(1));

    // To the trace, select a span, read its detail.
    c.find(Locator::LinkText("POST /chat"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#waterfall").await;
    assert_eq!(text_of(c, "#trace-name").await, "POST /chat");
    let rows = js(c, "return [...document.querySelectorAll('.wrow.span')].map(r => r.dataset.depth + ' ' + r.querySelector('a.sel').innerText)").await;
    assert_eq!(
        rows,
        json!([
            "0 retrieve chunks",
            "1 embed query",
            "0 openai.chat attempt 1",
            "0 openai.chat"
        ])
    );
    let failed = js(
        c,
        "return document.querySelectorAll('.wrow.span.error').length",
    )
    .await;
    assert_eq!(failed, json!(1));
    assert!(text_of(c, "#detail").await.contains("No span selected"));
    c.find(Locator::Css(&format!("a.sel[data-span='{}']", s.chat_span)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, &format!("#span-detail[data-span='{}']", s.chat_span)).await;
    let fields = js(c, "return [...document.querySelectorAll('#span-detail table.kv tr')].map(r => r.cells[0].innerText + '=' + r.cells[1].innerText)").await;
    for want in [
        "Model=gpt-4o-mini",
        "Prompt tokens=1,200",
        "Completion tokens=80",
        "Temperature=0.2",
        "Type=llm",
    ] {
        assert!(
            fields.as_array().unwrap().contains(&json!(want)),
            "{want} not in {fields}"
        );
    }
    let detail = text_of(c, "#detail").await;
    for want in [
        "You are a helpful assistant.",
        "Refunds are accepted within 30 days [1].",
        "\"provider\": \"openai\"",
        "\"attempt\": 2",
    ] {
        assert!(
            detail.contains(want),
            "{want:?} not in the detail: {detail}"
        );
    }
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&format!("span={}", s.chat_span))
    );
    screenshot(c, "trace").await;

    // Follow citation [1] to its source, then to the document.
    c.find(Locator::XPath(
        "//div[contains(@class,'content')]//a[@class='cite' and .='[1]']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(url.fragment(), Some("m1-s0"));
    let source = text_of(c, "li#m1-s0").await;
    assert!(
        source.contains("refund-policy.pdf") && source.contains("chunk-7"),
        "{source}"
    );
    assert!(source.contains("Customers may return items within 30 days."));
    let target = js(c, "return document.querySelector(':target').id").await;
    assert_eq!(target, json!("m1-s0"));
    c.find(Locator::Css("li#m1-s0 a.doc"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(c, "#document-id").await, s.document.to_string());
    let steps = js(c, "return [...document.querySelectorAll('table.steps')[0].querySelectorAll('tbody tr')].map(r => r.cells[0].innerText + ' ' + r.cells[1].innerText)").await;
    assert_eq!(
        steps,
        json!([
            "upload completed",
            "parse completed",
            "chunk completed",
            "embed failed",
            "embed completed"
        ])
    );
    let page = text_of(c, "main").await;
    assert!(page.contains("TimeoutError") && page.contains("embedding service timed out"));
    assert!(page.contains("pages 12") && page.contains("chunks 40"));
    screenshot(c, "document").await;

    // Sessions: the list, one session, its turn's trace.
    c.goto(&format!("{}/sessions", srv.base)).await.unwrap();
    let row = text_of(c, "#sessions tbody tr").await;
    assert!(
        row.contains(&s.session) && row.contains(&s.user.to_string()),
        "{row}"
    );
    screenshot(c, "sessions").await;
    c.find(Locator::LinkText(&s.session))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(c, "#session-id").await, s.session);
    let roles = js(
        c,
        "return [...document.querySelectorAll('.message .role')].map(e => e.innerText)",
    )
    .await;
    assert_eq!(roles, json!(["user", "assistant"]));
    screenshot(c, "session").await;
    c.find(Locator::Css(".message.assistant a.trace-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(c, "#trace-name").await, "POST /chat");

    // Usage: five charts, with a line per model, and the table.
    c.goto(&format!(
        "{}/usage?by=model&bucket=hour&since=24h",
        srv.base
    ))
    .await
    .unwrap();
    wait_css(c, "figure.chart svg").await;
    let charts = js(
        c,
        "return document.querySelectorAll('figure.chart svg').length",
    )
    .await;
    assert_eq!(charts, json!(5));
    let keys = js(
        c,
        "return [...document.querySelectorAll('.legend .key')].map(e => e.innerText)",
    )
    .await;
    assert_eq!(keys, json!(["gpt-4o-mini", "text-embedding-3-small"]));
    let lines = js(
        c,
        "return document.querySelectorAll('figure.chart polyline').length",
    )
    .await;
    assert_eq!(lines, json!(10));
    assert!(text_of(c, "#usage-table").await.contains("gpt-4o-mini"));
    screenshot(c, "usage").await;

    // 5,000 spans: every row drawn, a subtree folds, a late span's detail opens.
    c.goto(&format!("{}/traces/{}", srv.base, big.0))
        .await
        .unwrap();
    wait_css(c, "#waterfall").await;
    let n = js(c, "return document.querySelectorAll('.wrow.span').length").await;
    assert_eq!(n, json!(50 * 100));
    c.find(Locator::Css(".wrow.span button.tog"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hidden = js(
        c,
        "return document.querySelectorAll('.wrow.span[hidden]').length",
    )
    .await;
    assert_eq!(hidden, json!(99));
    c.find(Locator::Css(&format!("a.sel[data-span='{}']", big.1)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, &format!("#span-detail[data-span='{}']", big.1)).await;
    assert!(text_of(c, "#detail-name").await.starts_with("step 49."));
    screenshot(c, "trace-5000-spans").await;

    // Live: a trace written while the list is open appears without a reload.
    c.goto(&format!("{}/", srv.base)).await.unwrap();
    wait_css(c, "#traces tbody tr").await;
    js(c, "window.__not_reloaded = true; return null").await;
    let name = format!("live {}", Uuid::now_v7().simple());
    let (p2, guard2) = Builder::new(&db.url).build().unwrap();
    let ctx = TraceContext::new();
    p2.start_trace(&ctx, &name, OperationType::Search, None);
    p2.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    assert!(guard2.flush(FLUSH));
    let row = wait_css(c, &format!("tr.new[data-id='{}']", ctx.trace_id.as_uuid())).await;
    assert!(row.text().await.unwrap().contains(&name));
    assert_eq!(js(c, "return window.__not_reloaded").await, json!(true));
    screenshot(c, "traces-live").await;
    c.clone().close().await.unwrap();
}

/// A trace of `groups` spans each with `children` children: `groups * (children + 1)` spans.
/// Returns the trace and the last child of the last group.
fn big_trace(p: &PostgresProvider, groups: usize, children: usize) -> (Uuid, Uuid) {
    let ctx = TraceContext::new();
    p.start_trace(
        &ctx,
        "big trace",
        OperationType::Custom("batch".into()),
        None,
    );
    let mut last = None;
    for g in 0..groups {
        let group = p.start_span(&ctx, &format!("group {g}"), SpanType::Internal, None);
        for i in 0..children {
            let s = p.start_span(
                &ctx.child(group),
                &format!("step {g}.{i}"),
                SpanType::Tool,
                None,
            );
            p.end_span(&ctx, s, SpanEnd::default());
            last = Some(s);
        }
        p.end_span(&ctx, group, SpanEnd::default());
    }
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    (
        ctx.trace_id.as_uuid(),
        last.expect("children > 0").as_uuid(),
    )
}

/// Markup, script, style and `javascript:` payloads that set `window.__xss` or open a
/// dialog if they ever ran; plus the escaping-hostile text of the library's hostile-input
/// tests (quotes, backslashes, control characters, a COPY terminator) and an injection.
const XSS: &[&str] = &[
    "<script>window.__xss=1</script>",
    "<img src=x onerror=\"window.__xss=2\">",
    "\"><svg onload=window.__xss=3>",
    "'><iframe src=\"javascript:window.__xss=4\"></iframe>",
    "javascript:window.__xss=5",
    "<style>*{display:none}</style><link rel=stylesheet href=//evil.example/x.css>",
    "</title></textarea></pre><script>alert(6)</script>",
    "<a href=\"javascript:alert(7)\">click</a><details open ontoggle=window.__xss=8>",
    "<form action=javascript:alert(9)><button>go</button></form>",
    "it's \"quoted\" back\\slash\ttab\r\nline\n\\.\na,b,\"c,d\",,e\u{1}\u{1b}[31m\u{7f} é😀",
    "'); DROP TABLE observability.spans; --",
];

#[tokio::test]
async fn stored_markup_and_script_are_shown_as_text_and_never_run() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let h = XSS.join(" ");
    let meta = json!({ h.clone(): h.clone(), "nested": { "k": [h.clone()] } });
    let user = Uuid::now_v7();
    let kb = Uuid::now_v7();
    let document = Uuid::now_v7();
    let ctx = TraceContext::new()
        .with_user(user)
        .with_kb(kb)
        .with_session(h.clone());
    p.start_trace(
        &ctx,
        &h,
        OperationType::Custom(h.clone()),
        Some(meta.clone()),
    );
    let span = p.start_span(&ctx, &h, SpanType::Custom(h.clone()), Some(meta.clone()));
    p.end_span(
        &ctx,
        span,
        SpanEnd {
            outcome: Outcome::error(h.clone(), h.clone()),
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some(h.clone()),
                result_count: Some(1),
                top_score: Some(0.5),
            }),
            input_preview: Some(h.clone()),
            output_preview: Some(h.clone()),
            metadata: Some(meta.clone()),
            ..Default::default()
        },
    );
    let llm = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some(h.clone()),
            metrics: LlmMetrics {
                model: Some(h.clone()),
                prompt_tokens: Some(1),
                ..Default::default()
            },
            latency_ms: Some(1.0),
            input_preview: Some(h.clone()),
            output_preview: Some(h.clone()),
            outcome: Outcome::error(h.clone(), h.clone()),
            metadata: Some(meta.clone()),
        },
    );
    let mut m = ChatMessage::new(ChatRole::Assistant, format!("{h} [x] {h}"));
    m.turn_number = Some(1);
    m.sources = vec![Source {
        doc_id: Some(document),
        doc_name: Some(h.clone()),
        chunk_id: Some(h.clone()),
        score: Some(0.5),
        excerpt: Some(h.clone()),
    }];
    m.citations = vec![
        Citation {
            marker: "[x]".into(),
            doc_id: Some(document),
            page: Some(1),
            section: Some(h.clone()),
        },
        Citation {
            marker: XSS[0].into(),
            doc_id: None,
            page: None,
            section: Some(h.clone()),
        },
    ];
    p.log_chat_message(&ctx, m);
    p.log_chat_message(
        &ctx,
        ChatMessage::new(ChatRole::Custom(h.clone()), h.clone()),
    );
    let mut e = DocumentEvent::new(
        document,
        DocumentEventType::Embed,
        DocumentEventStatus::Failed,
    );
    e.error_type = Some(h.clone());
    e.error_message = Some(h.clone());
    e.metrics = DocumentMetrics::Embed(DocumentEmbedMetrics {
        vectors_generated: Some(1),
        embedding_model: Some(h.clone()),
    });
    e.metadata = Some(meta.clone());
    p.log_document_event(&ctx, e);
    p.end_trace(
        &ctx,
        Outcome::error(h.clone(), h.clone()),
        TraceTotals::default(),
    );
    assert!(guard.flush(FLUSH));
    let stats = p.stats();
    assert_eq!(stats.rejected + stats.refused, 0, "{stats:?}");

    let srv = serve(&db.url, &[], &[]);
    let b = browser().await;
    let c = &b.client;
    let trace = ctx.trace_id.as_uuid();
    // Each page, and whether it shows the payload (the usage by user shows ids only).
    let pages = [
        ("xss-traces", "/".to_owned(), true),
        ("xss-trace", format!("/traces/{trace}"), true),
        (
            "xss-trace-span",
            format!("/traces/{trace}?span={}", span.as_uuid()),
            true,
        ),
        ("xss-sessions", "/sessions".to_owned(), true),
        ("xss-document", format!("/documents/{document}"), true),
        ("xss-documents", "/documents".to_owned(), true),
        ("xss-usage-model", "/usage?by=model".to_owned(), true),
        ("xss-usage-user", "/usage?by=user".to_owned(), false),
    ];
    for (name, path, shown) in &pages {
        c.goto(&format!("{}{path}", srv.base)).await.unwrap();
        wait_css(c, "main").await;
        assert_nothing_ran(c, path).await;
        let body = text_of(c, "main").await;
        // Shown as the text it is (the payload names its own markup).
        assert!(
            !shown || body.contains("<script>window.__xss=1</script>"),
            "{path}: the payload is not shown as text: {body}"
        );
        screenshot(c, name).await;
    }
    // The session (its id is the payload, cut to the label limit), from the list.
    c.goto(&format!("{}/sessions", srv.base)).await.unwrap();
    wait_css(c, "#sessions tbody tr td a")
        .await
        .click()
        .await
        .unwrap();
    wait_css(c, "#session-id").await;
    assert_nothing_ran(c, "session").await;
    assert!(
        text_of(c, "#session-id")
            .await
            .starts_with("<script>window.__xss=1</script>")
    );
    let roles = js(c, "return document.querySelectorAll('.message').length").await;
    assert_eq!(roles, json!(2));
    screenshot(c, "xss-session").await;
    // The span's detail through the script, and the LLM call's.
    c.goto(&format!("{}/traces/{trace}", srv.base))
        .await
        .unwrap();
    for s in [span.as_uuid(), llm.as_uuid()] {
        c.find(Locator::Css(&format!("a.sel[data-span='{s}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_css(c, &format!("#span-detail[data-span='{s}']")).await;
        assert_nothing_ran(c, "span detail").await;
        let detail = text_of(c, "#detail").await;
        assert!(
            detail.contains("<img src=x onerror=\"window.__xss=2\">"),
            "{detail}"
        );
    }
    // The citation marker that is itself markup is a link holding it as text.
    let marker = js(c, "return [...document.querySelectorAll('.content a.cite, .content span.cite')].map(e => e.textContent)").await;
    assert_eq!(marker, json!([XSS[0], "[x]", XSS[0]]));
    // [x] links to its source; the other cites no document, so it is no link.
    let links = js(
        c,
        "return [...document.querySelectorAll('.content a.cite')].map(e => e.getAttribute('href'))",
    )
    .await;
    assert_eq!(links, json!(["#m0-s0"]));
    c.clone().close().await.unwrap();
}

/// No payload ran: the flag is unset, no dialog is open, and the page holds no element or
/// attribute a payload would have made.
async fn assert_nothing_ran(c: &Client, at: &str) {
    assert!(c.get_alert_text().await.is_err(), "{at}: a dialog is open");
    assert_eq!(
        js(c, "return typeof window.__xss").await,
        json!("undefined"),
        "{at}"
    );
    let made = js(
        c,
        "return {
            scripts: [...document.scripts].map(s => s.getAttribute('src')),
            iframes: document.querySelectorAll('iframe, img, form:not(.filters), details[ontoggle], link[href*=evil], main style').length,
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
            js_links: [...document.querySelectorAll('[href], [src], [action]')].filter(e => /^\\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action') || '')).length,
            hidden: getComputedStyle(document.body).display,
        }",
    )
    .await;
    assert_eq!(
        made,
        json!({ "scripts": ["/static/app.js"], "iframes": 0, "handlers": 0, "js_links": 0, "hidden": "block" }),
        "{at}"
    );
}
