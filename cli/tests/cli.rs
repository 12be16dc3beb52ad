//! The `tracing-postgres` binary against a real server: migrate, show, tail, stats, prune.
use tracing_postgres_test_support as common;

use std::process::{Command, Output};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{count, empty_db, fresh_db};
use sqlx::AssertSqlSafe;
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
    // One DEFAULT partition per partitioned table: the four of the spec, scores, and the
    // hourly and daily usage rollups.
    assert_eq!(parts.iter().filter(|p| p.is_default).count(), 7);
    assert!(parts.len() > 7);
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

/// `tracing-postgres doctor`'s output and exit code.
fn doctor(url: &str) -> (i32, String) {
    let out = cli(url, &["--color", "never", "doctor"]);
    let text = String::from_utf8(out.stdout).unwrap();
    (out.status.code().unwrap_or(-1), text)
}

/// The line of check `name`, and the fix below it if any.
fn check<'a>(text: &'a str, name: &str) -> (&'a str, &'a str) {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.get(9..9 + name.len()) == Some(name) {
            let fix = lines.next().filter(|l| l.trim_start().starts_with("fix:"));
            return (line, fix.unwrap_or(""));
        }
    }
    panic!("no check {name:?} in\n{text}");
}

#[tokio::test]
async fn doctor_finds_nothing_wrong_with_a_migrated_database() {
    let db = fresh_db().await;
    let (code, text) = doctor(&db.url);
    assert_eq!(code, 0, "{text}");
    for name in [
        "connect",
        "server",
        "schema",
        "migrations",
        "write grants",
        "partition upkeep",
        "rollup upkeep",
        "read grants",
        "prune grants",
        "partitions ahead",
        "default partitions",
        "test write",
    ] {
        let (line, fix) = check(&text, name);
        assert!(line.starts_with("ok "), "{line}");
        assert_eq!(fix, "");
    }
    assert!(text.ends_with("no problem found\n"), "{text}");
    // The test write was rolled back.
    assert_eq!(count(&db.pool, "traces").await, 0);
    assert_eq!(count(&db.pool, "spans").await, 0);
}

#[tokio::test]
async fn doctor_names_each_problem_with_its_fix_and_exits_1() {
    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, text) = doctor(&format!("postgres://u:pw-secret@127.0.0.1:{port}/db"));
    assert_eq!(code, 1, "{text}");
    let (line, fix) = check(&text, "connect");
    assert!(
        line.starts_with("problem") && line.contains("unreachable"),
        "{line}"
    );
    assert!(fix.contains("host and port"), "{fix}");
    assert!(!text.contains("pw-secret"), "{text}");

    // A role that does not exist.
    let db = fresh_db().await;
    let (code, text) = doctor(&db.url.replacen("postgres@", "tpg_nobody@", 1));
    assert_eq!(code, 1, "{text}");
    let (line, fix) = check(&text, "connect");
    assert!(line.contains("authentication_failed"), "{line}");
    assert!(fix.contains("\"tpg_nobody\""), "{fix}");

    // Not migrated.
    let empty = empty_db().await;
    let (code, text) = doctor(&empty.url);
    assert_eq!(code, 1, "{text}");
    let (line, fix) = check(&text, "schema");
    assert!(
        line.starts_with("problem") && line.contains("does not exist"),
        "{line}"
    );
    assert!(fix.contains("tracing-postgres migrate"), "{fix}");

    // One migration behind.
    sqlx::query(
        "DELETE FROM observability._sqlx_migrations \
         WHERE version = (SELECT max(version) FROM observability._sqlx_migrations)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // A row for a day without a partition waits in DEFAULT.
    sqlx::query(
        "INSERT INTO observability.traces (id, trace_id, name, operation_type, started_at) \
         VALUES (gen_random_uuid(), repeat('a', 32), 'far', 'x', '2100-01-01')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Tomorrow's spans partition gone.
    let tomorrow = (Utc::now() + TimeDelta::days(1)).format("%Y%m%d");
    sqlx::query(AssertSqlSafe(format!(
        "DROP TABLE observability.spans_p{tomorrow}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    // A role that may read and not write.
    let reader = format!(
        "tpg_reader_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
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

    let (code, text) = doctor(&db.url);
    assert_eq!(code, 1, "{text}");
    let (line, fix) = check(&text, "migrations");
    assert!(
        line.starts_with("problem") && line.contains("(1 pending)"),
        "{line}"
    );
    assert!(fix.contains("tracing-postgres migrate"), "{fix}");
    let (line, _) = check(&text, "partitions ahead");
    assert!(
        line.starts_with("problem") && line.contains("spans from"),
        "{line}"
    );
    let (line, fix) = check(&text, "default partitions");
    assert!(
        line.starts_with("problem") && line.contains("traces_default: 1 rows"),
        "{line}"
    );
    assert!(fix.contains("migrate"), "{fix}");
    assert!(text.ends_with("3 problem(s) found\n"), "{text}");

    let (code, text) = doctor(&db.url.replacen("postgres@", &format!("{reader}@"), 1));
    assert_eq!(code, 1, "{text}");
    let (line, fix) = check(&text, "write grants");
    assert!(line.starts_with("problem"), "{line}");
    assert!(line.contains("INSERT on observability.spans"), "{line}");
    assert!(fix.contains(&format!("TO {reader}")), "{fix}");
    assert!(check(&text, "read grants").0.starts_with("ok"), "{text}");
    assert!(check(&text, "prune grants").0.starts_with("note"), "{text}");
    let (line, _) = check(&text, "test write");
    assert!(
        line.starts_with("problem") && line.contains("permission_denied"),
        "{line}"
    );
    assert!(
        check(&text, "partition upkeep").0.starts_with("problem"),
        "{text}"
    );
    assert!(
        check(&text, "rollup upkeep").0.starts_with("problem"),
        "{text}"
    );
    for sql in [
        format!("DROP OWNED BY {reader}"),
        format!("DROP ROLE {reader}"),
    ] {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
}

/// `show` lists a trace's scores under its waterfall (control characters of a stored name
/// dropped); `stats` adds the score aggregates by model, or by name for `--by user`.
#[tokio::test]
async fn show_lists_a_traces_scores_and_stats_aggregates_them() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = write_trace(&p);
    assert!(guard.flush(FLUSH));
    let span: Uuid =
        sqlx::query_scalar("SELECT id FROM observability.spans WHERE name = 'openai.chat'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    p.log_score(Score {
        span_id: Some(SpanId(span)),
        comment: Some("wrong\nanswer".into()),
        source: ScoreSource::User,
        author: Some("u-1".into()),
        ..Score::new(ctx.trace_id, "thumbs", ScoreValue::Bool(false))
    });
    p.log_score(Score::new(
        ctx.trace_id,
        "help\u{1b}[31mfulness",
        ScoreValue::Numeric(0.75),
    ));
    assert!(guard.flush(FLUSH));

    let out = stdout(&cli(
        &db.url,
        &["show", &ctx.trace_id.to_string(), "--color", "never"],
    ));
    let at = out.find("scores (2)").unwrap_or_else(|| panic!("{out}"));
    let lines: Vec<&str> = out[at..].lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("thumbs ") && lines[1].contains("false"),
        "{out}"
    );
    assert!(
        lines[1].contains("user u-1") && lines[1].contains("span "),
        "{out}"
    );
    // The comment's first line only.
    assert!(
        lines[1].contains("wrong") && !out.contains("answer"),
        "{out}"
    );
    assert!(lines[2].starts_with("help[31mfulness ") && lines[2].contains("0.75"));
    assert!(
        lines[2].contains(" api ") && lines[2].contains("trace"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "{out}");

    let stats = stdout(&cli(&db.url, &["stats", "--color", "never"]));
    let at = stats.find("score ").unwrap_or_else(|| panic!("{stats}"));
    let rows: Vec<Vec<&str>> = stats[at..]
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Both scores count under the model of the scored span, or the trace's first by name.
    assert_eq!(
        rows,
        [
            vec!["gpt-4o-mini", "help[31mfulness", "1", "0.750", "0", "0.0"],
            vec!["gpt-4o-mini", "thumbs", "1", "0.000", "1", "100.0"],
        ],
        "{stats}"
    );
    let by_user = stdout(&cli(
        &db.url,
        &["stats", "--by", "user", "--color", "never"],
    ));
    assert!(
        by_user
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["(none)", "thumbs", "1", "0.000", "1", "100.0"]),
        "{by_user}"
    );
}

/// `stats --top N` gives the N users of highest cost lines of their own and sums the others.
#[tokio::test]
async fn stats_top_keeps_the_costliest_users_and_sums_the_others() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let users: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (i, user) in users.iter().enumerate() {
        let ctx = TraceContext::new().with_user(*user);
        p.start_trace(&ctx, "POST /chat", OperationType::Chat, None);
        // Users 0, 1 and 2 cost 1, 2 and 3 dollars.
        let totals = TraceTotals {
            total_cost_usd: Some(rust_decimal::Decimal::from(i as i64 + 1)),
            ..TraceTotals::default()
        };
        p.end_trace(&ctx, Outcome::success(), totals);
    }
    assert!(guard.flush(FLUSH));
    let out = stdout(&cli(
        &db.url,
        &[
            "stats", "--by", "user", "--bucket", "day", "--top", "1", "--color", "never",
        ],
    ));
    assert!(out.contains(&users[2].to_string()), "{out}");
    assert!(
        !out.contains(&users[0].to_string()) && !out.contains(&users[1].to_string()),
        "{out}"
    );
    let others = out
        .lines()
        .find(|l| l.contains("(other keys)"))
        .unwrap_or_else(|| panic!("{out}"));
    // bucket (2 words), "(other", "keys)", calls
    assert_eq!(others.split_whitespace().nth(4), Some("2"), "{others}");
    let all = stdout(&cli(
        &db.url,
        &["stats", "--by", "user", "--top", "0", "--color", "never"],
    ));
    assert!(
        users.iter().all(|u| all.contains(&u.to_string())) && !all.contains("(other keys)"),
        "{all}"
    );
}
