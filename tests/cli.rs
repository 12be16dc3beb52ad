//! The `tracing-postgres` binary against a real server: migrate, show, tail, stats, prune.
#![cfg(feature = "cli")]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{empty_db, fresh_db};
use tracing_postgres::partitions;
use tracing_postgres::*;

const FLUSH: Duration = Duration::from_secs(30);

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracing-postgres"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("run tracing-postgres")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A chat trace: retrieve (with a child embed), then a failed LLM call.
fn write_trace(p: &PostgresProvider) -> TraceContext {
    let ctx = TraceContext::new();
    p.start_trace(&ctx, "POST /chat", OperationType::Chat, None);
    let retrieve = p.start_span(&ctx, "retrieve", SpanType::Retrieval, None);
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
    p.end_span(&ctx, retrieve, SpanEnd::default());
    // The call is back-dated by its latency: let it start after the retrieval did.
    std::thread::sleep(Duration::from_millis(30));
    p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some("openai.chat".into()),
            latency_ms: Some(20.0),
            metrics: LlmMetrics {
                model: Some("gpt-4o-mini".into()),
                prompt_tokens: Some(1200),
                completion_tokens: Some(80),
                ..Default::default()
            },
            outcome: Outcome::error("RateLimitError", "429 Too Many Requests\nretry later"),
            ..Default::default()
        },
    );
    p.end_trace(
        &ctx,
        Outcome::error("RateLimitError", "upstream"),
        TraceTotals::default(),
    );
    ctx
}

#[tokio::test]
async fn migrate_creates_the_schema_and_its_partitions() {
    let db = empty_db().await;
    let out = stdout(&cli(&db.url, &["migrate"]));
    assert!(out.contains("schema up to date"), "{out}");
    let parts = partitions::list(&db.pool).await.unwrap();
    assert_eq!(parts.iter().filter(|p| p.is_default).count(), 4);
    assert!(parts.len() > 4);
    // Again: nothing to do, still fine.
    stdout(&cli(&db.url, &["migrate"]));
}

#[tokio::test]
async fn show_draws_the_tree_with_bars_tokens_and_errors() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = write_trace(&p);
    assert!(guard.flush(FLUSH));
    let id = ctx.trace_id.to_string();

    let out = stdout(&cli(&db.url, &["show", &id, "--color", "never"]));
    assert!(!out.contains('\u{1b}'), "no colour asked: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("POST /chat (chat) "), "{out}");
    assert!(lines[0].contains(&id) && lines[0].contains("error"));
    assert!(lines[0].contains("1,292 tokens"), "{out}");
    assert!(lines[1].contains("upstream"), "{out}");
    let body: Vec<&str> = lines[3..].to_vec();
    assert_eq!(body.len(), 3, "{out}");
    assert!(body[0].starts_with("retrieve "));
    assert!(body[1].starts_with("└─ embed query "));
    assert!(body[2].starts_with("openai.chat "));
    assert!(body[2].contains("1,280 tok") && body[2].contains("gpt-4o-mini"));
    // The error's first line only.
    assert!(body[2].contains("RateLimitError: 429 Too Many Requests"));
    assert!(!out.contains("retry later"));
    // Every bar is drawn, within its column.
    for l in &body {
        assert!(l.contains('█'), "{l}");
    }

    // The W3C id and the UUID form name the same trace; colour on demand.
    let uuid = ctx.trace_id.as_uuid().hyphenated().to_string();
    let coloured = stdout(&cli(&db.url, &["show", &uuid, "--color", "always"]));
    assert!(coloured.contains("\u{1b}[1m\u{1b}[31m") || coloured.contains("\u{1b}[31m"));
    assert!(coloured.contains("openai.chat"));

    let missing = cli(&db.url, &["show", &Uuid::now_v7().to_string()]);
    assert_eq!(missing.status.code(), Some(2));
    let bad = cli(&db.url, &["show", "nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a trace id"));
}

#[tokio::test]
async fn tail_prints_finished_traces_and_stats_sums_usage() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = write_trace(&p);
    let open = TraceContext::new();
    p.start_trace(&open, "still running", OperationType::Chat, None);
    assert!(guard.flush(FLUSH));

    let out = stdout(&cli(
        &db.url,
        &[
            "tail",
            "--count",
            "1",
            "--interval",
            "50ms",
            "--color",
            "never",
        ],
    ));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("POST /chat") && out.contains(&ctx.trace_id.to_string()));
    assert!(!out.contains("still running"));

    let out = stdout(&cli(&db.url, &["stats", "--color", "never"]));
    let row = out
        .lines()
        .find(|l| l.contains("gpt-4o-mini"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // bucket (2 words), model, calls, prompt, completion, cost, p50, p95, err %
    assert_eq!(&cols[3..6], ["1", "1200", "80"], "{row}");
    assert_eq!(cols[9], "100.0", "{row}");
    let by_user = stdout(&cli(&db.url, &["stats", "--by", "user", "--bucket", "day"]));
    assert!(by_user.contains("(none)"), "{by_user}");
}

#[tokio::test]
async fn prune_lists_on_a_dry_run_and_drops_otherwise() {
    let db = fresh_db().await;
    partitions::create(
        &db.pool,
        Utc::now() - TimeDelta::days(45),
        Utc::now() - TimeDelta::days(43),
        PartitionStep::Day,
    )
    .await
    .unwrap();
    let before = partitions::list(&db.pool).await.unwrap().len();
    let out = stdout(&cli(
        &db.url,
        &["prune", "--older-than", "30d", "--dry-run"],
    ));
    let would: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("would drop "))
        .collect();
    assert!(would.len() >= 9, "{out}");
    assert!(out.contains(&format!("would drop {} partitions", would.len() - 1)));
    assert_eq!(partitions::list(&db.pool).await.unwrap().len(), before);

    let out = stdout(&cli(&db.url, &["prune", "--older-than", "30d"]));
    assert!(
        out.contains(&format!("dropped {} partitions", would.len() - 1)),
        "{out}"
    );
    assert_eq!(
        partitions::list(&db.pool).await.unwrap().len(),
        before - (would.len() - 1)
    );
    // Nothing left that old.
    let out = stdout(&cli(&db.url, &["prune", "--older-than", "30d"]));
    assert!(out.contains("dropped 0 partitions"), "{out}");
}
