//! What the viewer's tests share: the `serve` binary on a free port, plain HTTP requests,
//! and a seeded store written through the explicit provider.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tracing_postgres::*;
use uuid::Uuid;

pub const FLUSH: Duration = Duration::from_secs(30);

/// `tracing-postgres serve` running until dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` after `serve` (a free port unless `--listen` is given) and
/// waits for its "serving" line.
pub fn serve(url: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracing-postgres"));
    cmd.arg("--database-url").arg(url).arg("serve");
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(args)
        .env_remove("TRACING_POSTGRES_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start tracing-postgres serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the serving line");
    let base = line
        .trim()
        .strip_prefix("serving ")
        .unwrap_or_else(|| panic!("no serving line: {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    Server { child, base }
}

/// A plain HTTP/1.1 response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// GET `path` from `base` (`http://host:port`) with extra header lines.
pub fn get(base: &str, path: &str, headers: &[&str]) -> Response {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect to the viewer");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The ids of what [`seed`] wrote.
pub struct Seeded {
    pub chat_trace: Uuid,
    pub chat_span: Uuid,
    pub session: String,
    pub user: Uuid,
    pub document: Uuid,
    pub ingest_trace: Uuid,
}

/// A chat request (retrieval, an embedding under it, a failed LLM call, then a good one) with
/// a user question and a cited answer; and a document's ingestion with a failed embed that
/// was retried.
pub fn seed(p: &PostgresProvider) -> Seeded {
    let user = Uuid::now_v7();
    let kb = Uuid::now_v7();
    let document = Uuid::now_v7();
    let session = format!("sess-{}", Uuid::now_v7().simple());
    let ctx = TraceContext::new()
        .with_user(user)
        .with_session(session.clone())
        .with_kb(kb);
    p.start_trace(&ctx, "POST /chat", OperationType::Chat, None);
    let retrieve = p.start_span(
        &ctx,
        "retrieve chunks",
        SpanType::Retrieval,
        Some(json!({"k": 5})),
    );
    p.log_llm_call(
        &ctx.child(retrieve),
        LlmCall {
            name: Some("embed query".into()),
            latency_ms: Some(3.0),
            metrics: LlmMetrics {
                model: Some("text-embedding-3-small".into()),
                prompt_tokens: Some(12),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    p.end_span(
        &ctx,
        retrieve,
        SpanEnd {
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some("what is the refund policy?".into()),
                result_count: Some(2),
                top_score: Some(0.91),
            }),
            ..Default::default()
        },
    );
    std::thread::sleep(Duration::from_millis(20));
    p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some("openai.chat attempt 1".into()),
            latency_ms: Some(8.0),
            metrics: LlmMetrics {
                model: Some("gpt-4o-mini".into()),
                prompt_tokens: Some(1200),
                completion_tokens: Some(0),
                ..Default::default()
            },
            outcome: Outcome::error("RateLimitError", "429 Too Many Requests"),
            ..Default::default()
        },
    );
    // Calls are back-dated by their latency: let this one start after the first.
    std::thread::sleep(Duration::from_millis(40));
    let chat_span = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some("openai.chat".into()),
            latency_ms: Some(20.0),
            metrics: LlmMetrics {
                model: Some("gpt-4o-mini".into()),
                prompt_tokens: Some(1200),
                completion_tokens: Some(80),
                temperature: Some(0.2),
                ..Default::default()
            },
            input_preview: Some("You are a helpful assistant. Context: refunds…".into()),
            output_preview: Some("Refunds are accepted within 30 days [1].".into()),
            metadata: Some(json!({"provider": "openai", "retry": {"attempt": 2}})),
            ..Default::default()
        },
    );
    let mut question = ChatMessage::new(ChatRole::User, "What is the refund policy?");
    question.turn_number = Some(1);
    p.log_chat_message(&ctx, question);
    let mut answer = ChatMessage::new(
        ChatRole::Assistant,
        "Refunds are accepted within 30 days [1]. Shipping is not refunded [2].",
    );
    answer.turn_number = Some(2);
    answer.sources = vec![
        Source {
            doc_id: Some(document),
            doc_name: Some("refund-policy.pdf".into()),
            chunk_id: Some("chunk-7".into()),
            score: Some(0.91),
            excerpt: Some("Customers may return items within 30 days.".into()),
        },
        Source {
            doc_id: Some(kb),
            doc_name: Some("shipping.md".into()),
            chunk_id: Some("chunk-2".into()),
            score: Some(0.72),
            excerpt: Some("Shipping costs are not refundable.".into()),
        },
    ];
    answer.citations = vec![
        Citation {
            marker: "[1]".into(),
            doc_id: Some(document),
            page: Some(3),
            section: Some("Returns".into()),
        },
        Citation {
            marker: "[2]".into(),
            doc_id: Some(kb),
            page: None,
            section: None,
        },
    ];
    answer.completion_tokens = Some(80);
    answer.response_time_ms = Some(42.0);
    p.log_chat_message(&ctx, answer);
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());

    // The document's ingestion, in a trace of its own.
    let ing = TraceContext::new().with_kb(kb);
    p.start_trace(
        &ing,
        "ingest refund-policy.pdf",
        OperationType::Document,
        None,
    );
    let steps = [
        (
            DocumentEventType::Upload,
            DocumentEventStatus::Completed,
            DocumentMetrics::None,
            None,
        ),
        (
            DocumentEventType::Parse,
            DocumentEventStatus::Completed,
            DocumentMetrics::Parse(DocumentParseMetrics {
                extracted_pages: Some(12),
                extracted_chars: Some(48_000),
                tables_found: Some(2),
                images_found: Some(1),
            }),
            None,
        ),
        (
            DocumentEventType::Chunk,
            DocumentEventStatus::Completed,
            DocumentMetrics::Chunk(DocumentChunkMetrics {
                chunks_created: Some(40),
                avg_chunk_size: Some(1200),
            }),
            None,
        ),
        (
            DocumentEventType::Embed,
            DocumentEventStatus::Failed,
            DocumentMetrics::None,
            Some(("TimeoutError", "embedding service timed out")),
        ),
        (
            DocumentEventType::Embed,
            DocumentEventStatus::Completed,
            DocumentMetrics::Embed(DocumentEmbedMetrics {
                vectors_generated: Some(40),
                embedding_model: Some("text-embedding-3-small".into()),
            }),
            None,
        ),
    ];
    for (i, (kind, status, metrics, error)) in steps.into_iter().enumerate() {
        let mut e = DocumentEvent::new(document, kind, status);
        e.duration_ms = Some(5.0 + i as f64);
        e.metrics = metrics;
        if let Some((t, m)) = error {
            e.error_type = Some(t.into());
            e.error_message = Some(m.into());
            e.retryable = Some(true);
        }
        if i == 4 {
            e.retry_count = Some(1);
        }
        p.log_document_event(&ing, e);
        std::thread::sleep(Duration::from_millis(5));
    }
    p.end_trace(&ing, Outcome::success(), TraceTotals::default());
    Seeded {
        chat_trace: ctx.trace_id.as_uuid(),
        chat_span: chat_span.as_uuid(),
        session,
        user,
        document,
        ingest_trace: ing.trace_id.as_uuid(),
    }
}
