//! The writer's warnings reach the application's own log, from the writer's thread, with no
//! password in them. A test binary of its own: it installs a global subscriber.

use tracing_postgres_test_support as common;

use std::time::{Duration, Instant};

use common::Capture;
use tracing_postgres::*;

#[test]
fn database_down_logs_a_rate_limited_warning_without_the_password() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (p, guard) = Builder::new(format!("postgres://app:hunter2-secret@127.0.0.1:{port}/db"))
        .flush_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let ctx = TraceContext::new();
    let start = Instant::now();
    for _ in 0..100 {
        p.log_llm_call(&ctx, LlmCall::default());
    }
    // Refused before queueing: logged by the writer with its reason.
    p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, "no context"));
    assert!(start.elapsed() < Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        if text.contains("records kept and retried") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("WARN"), "{text}");
    assert!(
        text.contains("cannot write to the database (unreachable), records kept and retried"),
        "{text}"
    );
    // The new failure is logged at once with its fix, before any retry.
    assert!(
        text.contains("cannot write to the database (unreachable); records are kept"),
        "{text}"
    );
    assert!(text.contains("Fix: check the host and port"), "{text}");
    assert!(text.contains("records rejected before queueing"), "{text}");
    assert!(text.contains("session id"), "{text}");
    // Many retries, one burst of warnings (rate-limited to one per 10 s).
    std::thread::sleep(Duration::from_millis(500));
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(guard.stats().retries > 2);
    assert_eq!(
        text.matches("records kept and retried").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("records are kept and retried").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{guard:?} {p:?}").contains("hunter2"));
    let report = guard.shutdown(Duration::from_millis(200));
    assert_eq!(report.dropped(), 100);
    assert_eq!(report.stats.rejected, 1);
}
