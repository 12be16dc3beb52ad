//! `tracing-postgres serve` over plain HTTP: the access token, the security headers of every
//! page, errors as pages with their status, the database down and back, whole values.
use tracing_postgres_test_support as common;

mod viewer;

use std::process::{Command, Stdio};

use common::{Cluster, fresh_db, fresh_db_on};
use tracing_postgres::Builder;
use viewer::{FLUSH, get, seed, serve};

fn pages(s: &viewer::Seeded) -> Vec<String> {
    vec![
        "/".into(),
        "/?status=success&op=chat".into(),
        format!("/traces/{}", s.chat_trace),
        format!("/traces/{}", s.chat_trace.simple()),
        format!("/traces/{}?span={}", s.chat_trace, s.chat_span),
        format!("/traces/{}/spans/{}", s.chat_trace, s.chat_span),
        "/sessions".into(),
        format!("/sessions/{}", s.session),
        "/documents".into(),
        format!("/documents/{}", s.document),
        "/usage".into(),
        "/usage?by=user&bucket=day&since=30d".into(),
        "/fragments/traces".into(),
    ]
}

#[tokio::test]
async fn every_page_answers_200_with_a_csp_that_forbids_inline_script() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let s = seed(&p);
    assert!(guard.flush(FLUSH));
    let srv = serve(&db.url, &[], &[]);
    for path in pages(&s) {
        let r = get(&srv.base, &path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("style-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // No inline script anywhere: the only script is the served file.
        assert!(!r.body.contains("<script>"), "{path}");
        assert!(!r.body.contains(" style="), "{path}");
    }
    let js = get(&srv.base, "/static/app.js", &[]);
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    // The trace page has the spans, the cited answer and the document steps.
    let page = get(&srv.base, &format!("/traces/{}", s.chat_trace), &[]).body;
    for text in [
        "openai.chat",
        "retrieve chunks",
        "refund-policy.pdf",
        "RateLimitError",
    ] {
        assert!(page.contains(text), "{text} missing");
    }
    assert!(
        page.contains("href=\"#m1-s0\""),
        "citation [1] links to its source"
    );
    let doc = get(&srv.base, &format!("/documents/{}", s.document), &[]).body;
    assert!(doc.contains("embedding service timed out") && doc.contains("chunks 40"));
    // Two models: with top=1 the costlier has its rows, the other is summed as "(other keys)".
    let usage = get(&srv.base, "/usage?by=model&top=1", &[]).body;
    let table = &usage[usage.find("id=\"usage-table\"").unwrap()..];
    assert!(
        table.contains("gpt-4o-mini") && table.contains("(other keys)"),
        "{table}"
    );
    assert!(!table.contains("text-embedding-3-small"), "{table}");
    let every = get(&srv.base, "/usage?by=model&top=2", &[]).body;
    let table = &every[every.find("id=\"usage-table\"").unwrap()..];
    assert!(
        table.contains("text-embedding-3-small") && !table.contains("(other keys)"),
        "{table}"
    );
}

#[tokio::test]
async fn bad_ids_and_parameters_get_pages_with_their_status() {
    let db = fresh_db().await;
    let srv = serve(&db.url, &[], &[]);
    let cases = [
        ("/traces/not-an-id", 400),
        ("/traces/0193f0c2-8a4b-7c3d-9e5f-0123456789ab", 404),
        ("/documents/0193f0c2-8a4b-7c3d-9e5f-0123456789ab", 200),
        ("/sessions/nobody", 404),
        ("/?status=%3Cscript%3E", 400),
        ("/?from=yesterday-ish", 400),
        ("/?user=x", 400),
        ("/?before=1_2", 400),
        ("/usage?by=color", 400),
        ("/usage?top=0", 400),
        ("/usage?top=many", 400),
        ("/nowhere", 404),
        (
            "/traces/0193f0c2-8a4b-7c3d-9e5f-0123456789ab/full?field=x",
            404,
        ),
    ];
    for (path, status) in cases {
        let r = get(&srv.base, path, &[]);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body.contains("<h1>") || status == 200, "{path}: a page");
        assert!(r.header("content-security-policy").is_some(), "{path}");
        assert!(!r.body.contains("<script>"), "{path}");
    }
}

#[tokio::test]
async fn whole_values_are_served_as_plain_text() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let s = seed(&p);
    assert!(guard.flush(FLUSH));
    let srv = serve(&db.url, &[], &[]);
    let r = get(
        &srv.base,
        &format!(
            "/traces/{}/full?span={}&field=input_preview",
            s.chat_trace, s.chat_span
        ),
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    assert!(r.body.starts_with("You are a helpful assistant."));
}

#[tokio::test]
async fn beyond_loopback_it_refuses_to_start_without_a_token() {
    let db = fresh_db().await;
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-postgres"))
        .args(["--database-url", &db.url, "serve", "--listen", "0.0.0.0:0"])
        .env_remove("TRACING_POSTGRES_TOKEN")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without an access token"),
        "{err}"
    );
}

#[tokio::test]
async fn with_a_token_requests_without_it_get_401_and_with_it_200() {
    let db = fresh_db().await;
    let token = "t0k-3n_s3cret";
    // Listening on every address, the token from the environment.
    let srv = serve(
        &db.url,
        &["--listen", "0.0.0.0:0"],
        &[("TRACING_POSTGRES_TOKEN", token)],
    );
    let base = srv.base.replace("0.0.0.0", "127.0.0.1");
    for path in ["/", "/usage", "/static/app.js", "/nowhere"] {
        assert_eq!(get(&base, path, &[]).status, 401, "{path}");
        let wrong = get(&base, path, &["Authorization: Bearer t0k-3n_s3cre"]);
        assert_eq!(wrong.status, 401, "{path}");
        let cookie = get(&base, path, &["Cookie: tpg_token=nope"]);
        assert_eq!(cookie.status, 401, "{path}");
    }
    let ok = get(&base, "/", &[&format!("Authorization: Bearer {token}")]);
    assert_eq!(ok.status, 200);
    let ok = get(
        &base,
        "/usage",
        &[&format!("Cookie: a=b; tpg_token={token}")],
    );
    assert_eq!(ok.status, 200);
    // A link with the token sets the cookie and drops the token from the address.
    let r = get(&base, &format!("/usage?by=kb&token={token}"), &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/usage?by=kb"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert_eq!(get(&base, "/?token=wrong", &[]).status, 401);

    // --token on the command line, on loopback, is required as well.
    let srv = serve(&db.url, &["--token", token], &[]);
    assert_eq!(get(&srv.base, "/", &[]).status, 401);
    assert_eq!(
        get(&srv.base, "/", &[&format!("Authorization: Bearer {token}")]).status,
        200
    );
}

#[tokio::test]
async fn the_database_down_gives_503_pages_and_the_viewer_serves_again_once_it_is_back() {
    let cluster = Cluster::start();
    let db = fresh_db_on(&cluster.url()).await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let s = seed(&p);
    assert!(guard.flush(FLUSH));
    drop(guard);
    let srv = serve(&db.url, &[], &[]);
    let trace = format!("/traces/{}", s.chat_trace);
    assert_eq!(get(&srv.base, &trace, &[]).status, 200);

    cluster.stop_server();
    for path in ["/", trace.as_str(), "/sessions", "/usage"] {
        let r = get(&srv.base, path, &[]);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(r.body.contains("Database unavailable"), "{path}");
    }
    cluster.start_server();
    // The pool reconnects on the next request (its stale connections are replaced).
    let mut status = 0;
    for _ in 0..20 {
        status = get(&srv.base, &trace, &[]).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_slow_query_is_cancelled_by_the_statement_timeout_and_gets_a_503() {
    let db = fresh_db().await;
    let srv = serve(&db.url, &["--statement-timeout", "200ms"], &[]);
    // Hold a lock the traces list needs: its query waits, and is cancelled.
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE observability.traces IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let base = srv.base.clone();
    let r = tokio::task::spawn_blocking(move || get(&base, "/", &[]))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("statement timeout"), "{}", r.body);
    tx.rollback().await.unwrap();
    assert_eq!(get(&srv.base, "/", &[]).status, 200);
}

#[tokio::test]
async fn huge_values_are_shown_cut_with_a_link_to_the_whole() {
    use serde_json::json;
    use tracing_postgres::*;
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = TraceContext::new()
        .with_kb(uuid::Uuid::now_v7())
        .with_user(uuid::Uuid::now_v7())
        .with_session("huge");
    // A 10 MB prompt; a message and a metadata value past the 1 MB content limit.
    let ten_mb = "<b>x</b>".repeat(10_000_000 / 8);
    let over_1mb = "<b>x</b>".repeat(1_200_000 / 8);
    p.start_trace(&ctx, "huge", OperationType::Chat, None);
    // Building and dropping JSON 10,000 deep recurses that deep: on a thread with the stack
    // for it (the writer stores it cut at its depth limit).
    let (p2, ctx2, prompt, big) = (p.clone(), ctx.clone(), ten_mb, over_1mb.clone());
    let span = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut deep = json!("leaf");
            for _ in 0..10_000 {
                deep = json!({ "d": deep });
            }
            let p = p2;
            let ctx = ctx2;
            let ten_mb = prompt;
            p.log_llm_call(
                &ctx,
                LlmCall {
                    name: Some("huge call".into()),
                    input_preview: Some(ten_mb.clone()),
                    metadata: Some(json!({ "deep": deep, "big": big })),
                    latency_ms: Some(1.0),
                    ..Default::default()
                },
            )
        })
        .unwrap()
        .join()
        .unwrap();
    p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, over_1mb));
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));
    let srv = serve(&db.url, &[], &[]);
    let trace = ctx.trace_id.as_uuid();
    let span = span.as_uuid();
    for path in [
        format!("/traces/{trace}"),
        format!("/traces/{trace}?span={span}"),
        format!("/traces/{trace}/spans/{span}"),
        "/sessions/huge".to_owned(),
    ] {
        let r = get(&srv.base, &path, &[]);
        assert_eq!(r.status, 200, "{path}");
        // The stored message is 1,000,000 characters (the content limit): the page holds a
        // part of it and the link to the rest.
        assert!(r.body.len() < 400_000, "{path}: {} bytes", r.body.len());
        assert!(r.body.contains("Show the whole"), "{path}");
        assert!(!r.body.contains("<b>"), "{path}: stored markup escaped");
    }
    let msg: (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM observability.chat_messages WHERE session_id = 'huge'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let whole = get(
        &srv.base,
        &format!("/traces/{trace}/full?message={}&field=content", msg.0),
        &[],
    );
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len(), 1_000_000, "the whole stored message");
    let meta = get(
        &srv.base,
        &format!("/traces/{trace}/full?span={span}&field=metadata"),
        &[],
    );
    assert_eq!(meta.status, 200);
    assert!(
        meta.body.len() > 1_000_000,
        "the whole metadata: {}",
        meta.body.len()
    );
}

#[tokio::test]
async fn every_page_works_for_a_role_with_only_select_on_the_schema() {
    use sqlx::AssertSqlSafe;
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let s = seed(&p);
    assert!(guard.flush(FLUSH));
    let reader = format!(
        "tpg_viewer_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    // The grants the README gives for the viewer.
    for sql in [
        format!("CREATE ROLE {reader} LOGIN"),
        format!("GRANT USAGE ON SCHEMA observability TO {reader}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA observability TO {reader}"),
    ] {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let url = db.url.replacen("postgres@", &format!("{reader}@"), 1);
    assert_ne!(url, db.url, "the test server's URL names the postgres user");
    let srv = serve(&url, &[], &[]);
    for path in pages(&s) {
        let r = get(&srv.base, &path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    drop(srv);
    for sql in [
        format!("DROP OWNED BY {reader}"),
        format!("DROP ROLE {reader}"),
    ] {
        let _ = sqlx::query(AssertSqlSafe(sql)).execute(&db.pool).await;
    }
}
