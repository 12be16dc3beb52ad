//! Scores and feedback: written through the provider (`log_score`) and the event convention
//! (`score_name` and `score_value`), read back with `query::trace_scores`, `message_scores` and
//! `score_stats`, from a real PostgreSQL.
//!
//! Late and orphan scores are **kept**: a score of a trace that ended hours ago (in another
//! writer, whose state is gone) and one of a trace that is not stored at all are both written,
//! since the trace may be written by another process, or later.

use tracing_postgres_test_support as common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{count, fresh_db};
use sqlx::PgPool;
use tracing::Dispatch;
use tracing_postgres::query::{self, ScoreBy, ScoreStat, ScoreStatsQuery, StoredScore};
use tracing_postgres::*;
use tracing_subscriber::prelude::*;
use uuid::Uuid;

use crate::hostile_input::{HOSTILE, INJECTION, LONG_SPAN_NAME};

const FLUSH: Duration = Duration::from_secs(30);

fn ctx() -> TraceContext {
    TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session("session-1")
        .with_kb(Uuid::now_v7())
}

fn flushed(guard: &WriterGuard) -> Stats {
    assert!(guard.flush(FLUSH), "flush timed out: {:?}", guard.stats());
    let s = guard.stats();
    assert_eq!(s.pending(), 0, "{s:?}");
    s
}

async fn scores_of(pool: &PgPool, trace: Uuid) -> Vec<StoredScore> {
    query::trace_scores(pool, trace).await.unwrap()
}

/// The provider path: a score of a trace, of one of its spans and of one of its messages, each
/// with every field, read back through the query API.
#[tokio::test]
async fn provider_scores_of_a_trace_a_span_and_a_message_are_read_back() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(&ctx, "chat", OperationType::Chat, None);
    let span = p.log_llm_call(&ctx, LlmCall::default());
    p.log_chat_message(&ctx, ChatMessage::new(ChatRole::Assistant, "an answer"));
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    flushed(&guard);
    let message: Uuid = sqlx::query_scalar("SELECT id FROM observability.chat_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();

    p.log_score(Score {
        comment: Some("clear and short".into()),
        source: ScoreSource::User,
        author: Some("user-7".into()),
        ..Score::new(ctx.trace_id, "helpfulness", ScoreValue::Numeric(0.75))
    });
    p.log_score(Score {
        span_id: Some(span),
        source: ScoreSource::Model,
        author: Some("judge-model".into()),
        ..Score::new(ctx.trace_id, "faithfulness", ScoreValue::Bool(false))
    });
    p.log_score(Score {
        message_id: Some(message),
        source: ScoreSource::Rule,
        ..Score::new(
            ctx.trace_id,
            "topic",
            ScoreValue::Categorical("off-topic".into()),
        )
    });
    let s = flushed(&guard);
    assert_eq!((s.written, s.rejected, s.refused), (7, 0, 0), "{s:?}");

    let scores = scores_of(&db.pool, ctx.trace_id.as_uuid()).await;
    let seen: Vec<_> = scores
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.data_type.as_str(),
                s.value(),
                s.span_id,
                s.message_id,
                s.source.as_str(),
                s.author.as_deref(),
                s.comment.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "helpfulness",
                "numeric",
                Some(ScoreValue::Numeric(0.75)),
                None,
                None,
                "user",
                Some("user-7"),
                Some("clear and short"),
            ),
            (
                "faithfulness",
                "boolean",
                Some(ScoreValue::Bool(false)),
                Some(span.as_uuid()),
                None,
                "model",
                Some("judge-model"),
                None,
            ),
            (
                "topic",
                "categorical",
                Some(ScoreValue::Categorical("off-topic".into())),
                None,
                Some(message),
                "rule",
                None,
                None,
            ),
        ]
    );
    assert!(scores.iter().all(|s| s.trace_id == ctx.trace_id.as_uuid()));
    let by_message = query::message_scores(&db.pool, message).await.unwrap();
    assert_eq!(by_message, scores[2..]);
}

/// The event convention: inside a span, a score of that span; in the root span, of the trace;
/// value kinds by the field's type; refused (and counted) outside any span, without a value,
/// with an unknown source or a NaN.
#[tokio::test]
async fn score_events_attach_to_their_span_or_trace_and_bad_ones_are_counted() {
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let message = Uuid::now_v7();
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("request");
        let _r = root.enter();
        tracing::info!(score_name = "faithfulness", score_value = 0.9_f64);
        let child = tracing::info_span!("answer", model = "gpt-4o");
        let _c = child.enter();
        tracing::info!(
            score_name = "thumbs",
            score_value = false,
            score_comment = "wrong date",
            score_source = "user",
            score_author = "u-1",
        );
        tracing::info!(score_name = "thumbs", score_value = "TRUE", score_message_id = %message);
        tracing::info!(
            score_name = "topic",
            score_value = "billing",
            score_source = "Rule"
        );
        tracing::info!(score_name = "stars", score_value = 4_u64);
        // Refused: no value, an unknown source, NaN, a message id that is not one.
        tracing::info!(score_name = "thumbs");
        tracing::info!(
            score_name = "thumbs",
            score_value = true,
            score_source = "robot"
        );
        tracing::info!(score_name = "grade", score_value = f64::NAN);
        tracing::info!(
            score_name = "thumbs",
            score_value = true,
            score_message_id = "m-1"
        );
    });
    // Outside any span: a score of nothing.
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!(score_name = "thumbs", score_value = true);
    });
    let s = flushed(&guard);
    // 5 scores, the span, and the trace's start and end (merged: one row, two records).
    assert_eq!((s.written, s.rejected, s.refused), (8, 5, 0), "{s:?}");

    let (trace, span): (Uuid, Uuid) =
        sqlx::query_as("SELECT trace_id, id FROM observability.spans WHERE name = 'answer'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let scores = scores_of(&db.pool, trace).await;
    let seen: Vec<_> = scores
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.value(),
                s.span_id,
                s.message_id,
                s.source.as_str(),
                s.author.as_deref(),
                s.comment.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "faithfulness",
                Some(ScoreValue::Numeric(0.9)),
                None,
                None,
                "api",
                None,
                None
            ),
            (
                "thumbs",
                Some(ScoreValue::Bool(false)),
                Some(span),
                None,
                "user",
                Some("u-1"),
                Some("wrong date"),
            ),
            (
                "thumbs",
                Some(ScoreValue::Bool(true)),
                Some(span),
                Some(message),
                "api",
                None,
                None,
            ),
            (
                "topic",
                Some(ScoreValue::Categorical("billing".into())),
                Some(span),
                None,
                "rule",
                None,
                None,
            ),
            (
                "stars",
                Some(ScoreValue::Numeric(4.0)),
                Some(span),
                None,
                "api",
                None,
                None,
            ),
        ]
    );
    assert_eq!(count(&db.pool, "scores").await, 5);
}

/// A trace that ended hours ago, written by a writer that is gone (its trace state with it),
/// and a trace that is stored nowhere: a new writer's scores of both are kept.
#[tokio::test]
async fn scores_of_a_trace_closed_hours_ago_and_of_a_missing_trace_are_kept() {
    let db = fresh_db().await;
    let old = TraceContext::new();
    {
        let (p, guard) = Builder::new(&db.url).build().unwrap();
        p.start_trace(&old, "nightly", OperationType::Generation, None);
        p.end_trace(&old, Outcome::success(), TraceTotals::default());
        let report = guard.shutdown(FLUSH);
        assert!(report.complete, "{report:?}");
    }
    // Its row dated three hours back, as if it ran then (moved to that hour's partition).
    sqlx::query(
        "UPDATE observability.traces SET started_at = started_at - interval '3 hours', \
         ended_at = ended_at - interval '3 hours' WHERE id = $1",
    )
    .bind(old.trace_id.as_uuid())
    .execute(&db.pool)
    .await
    .unwrap();
    let trace_id = old.trace_id;
    drop(old);

    // Another process, at night: only the ids.
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let missing = TraceId::new();
    p.log_score(Score {
        source: ScoreSource::Model,
        ..Score::new(trace_id, "faithfulness", ScoreValue::Numeric(0.25))
    });
    p.log_score(Score::new(missing, "thumbs", ScoreValue::Bool(true)));
    let s = flushed(&guard);
    assert_eq!((s.written, s.rejected, s.refused), (2, 0, 0), "{s:?}");

    let late = scores_of(&db.pool, trace_id.as_uuid()).await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].value(), Some(ScoreValue::Numeric(0.25)));
    let started: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT started_at FROM observability.traces WHERE id = $1")
            .bind(trace_id.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(late[0].created_at - started > TimeDelta::hours(3));

    let orphan = scores_of(&db.pool, missing.as_uuid()).await;
    assert_eq!(orphan.len(), 1);
    assert_eq!(orphan[0].value(), Some(ScoreValue::Bool(true)));
    assert_eq!(count(&db.pool, "traces").await, 1);
}

/// Hostile names, labels, comments and authors, through both paths: stored sanitised (NUL
/// removed, cut at a character boundary to the label or content limit) or verbatim; empty
/// names and non-finite numbers refused and counted; the tables intact.
#[tokio::test]
async fn hostile_names_values_and_comments_are_stored_sanitised_or_refused() {
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let p = layer.provider().clone();
    let trace = TraceId::new();
    let long_comment = "c".repeat(1_000_001);
    let cases = [
        (HOSTILE, HOSTILE, HOSTILE, HOSTILE),
        (INJECTION, INJECTION, INJECTION, INJECTION),
        ("na\0me", "la\0bel", "com\0ment", "au\0thor"),
        (
            LONG_SPAN_NAME,
            LONG_SPAN_NAME,
            long_comment.as_str(),
            LONG_SPAN_NAME,
        ),
    ];
    for (name, label, comment, author) in cases {
        p.log_score(Score {
            comment: Some(comment.into()),
            author: Some(author.into()),
            ..Score::new(trace, name, ScoreValue::Categorical(label.into()))
        });
    }
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        p.log_score(Score::new(trace, "grade", ScoreValue::Numeric(bad)));
    }
    p.log_score(Score::new(trace, "", ScoreValue::Bool(true)));
    p.log_score(Score::new(trace, "\0 \0", ScoreValue::Bool(true)));
    // The event path: hostile text in every field, an infinite value.
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("hostile").entered();
        tracing::info!(
            score_name = HOSTILE,
            score_value = INJECTION,
            score_comment = "x\0y",
            score_author = INJECTION,
        );
        tracing::info!(score_name = "grade", score_value = f64::INFINITY);
    });
    let s = flushed(&guard);
    // 4 + 1 scores and the event's trace (its start and end); 3 + 2 + 1 refused.
    assert_eq!((s.written, s.rejected, s.refused), (7, 6, 0), "{s:?}");

    let stored = scores_of(&db.pool, trace.as_uuid()).await;
    let seen: Vec<_> = stored
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.value_text.clone().unwrap_or_default(),
                s.comment.clone().unwrap_or_default(),
                s.author.clone().unwrap_or_default(),
            )
        })
        .collect();
    let label_cut: String = LONG_SPAN_NAME.chars().take(256).collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        seen,
        [
            (s(HOSTILE), s(HOSTILE), s(HOSTILE), s(HOSTILE)),
            (s(INJECTION), s(INJECTION), s(INJECTION), s(INJECTION)),
            (s("name"), s("label"), s("comment"), s("author")),
            (
                label_cut.clone(),
                label_cut.clone(),
                "c".repeat(1_000_000),
                label_cut
            ),
        ]
    );
    let event_trace: Uuid = sqlx::query_scalar("SELECT id FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let by_event = scores_of(&db.pool, event_trace).await;
    assert_eq!(by_event.len(), 1);
    let e = &by_event[0];
    assert_eq!(
        (
            e.name.as_str(),
            e.value_text.as_deref(),
            e.comment.as_deref(),
            e.author.as_deref()
        ),
        (HOSTILE, Some(INJECTION), Some("xy"), Some(INJECTION))
    );
    for t in ["traces", "spans", "scores"] {
        count(&db.pool, t).await;
    }
}

/// A score the database refuses (a name too big for its index, with the label limit raised
/// past the documented 600 characters) is refused alone: the batch is split and written again
/// through the upsert, and each neighbour is stored exactly once.
#[tokio::test]
async fn a_refused_score_is_isolated_and_its_rewritten_neighbours_stored_once() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url)
        .text_limits(TextLimits {
            label: 1_000,
            ..TextLimits::default()
        })
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Pseudo-random supplementary-plane characters: 4 bytes each, nothing for pglz to squeeze.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let huge: String = (0..1_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_u32(0x1_0000 + (x % 0x10_0000) as u32).expect("a scalar value")
        })
        .collect();
    let trace = TraceId::new();
    for (i, name) in ["a", "b", huge.as_str(), "c", "d"].into_iter().enumerate() {
        p.log_score(Score::new(trace, name, ScoreValue::Numeric(i as f64)));
    }
    let s = flushed(&guard);
    assert_eq!((s.written, s.rejected, s.refused), (4, 0, 1), "{s:?}");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM observability.scores ORDER BY value_numeric")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(names, ["a", "b", "c", "d"]);
}

/// Aggregates by name, model, knowledge base and day, with a name filter: every figure computed
/// by hand from the scores below.
#[tokio::test]
async fn score_stats_give_count_mean_and_share_of_negatives_by_key() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let llm = |model: &str| LlmCall {
        metrics: LlmMetrics {
            model: Some(model.into()),
            ..LlmMetrics::default()
        },
        ..LlmCall::default()
    };
    // Trace 1, kb A: one span of gpt-4o. Trace 2, kb B: a span of claude, with a message.
    let (kb_a, kb_b) = (Uuid::now_v7(), Uuid::now_v7());
    let t1 = ctx().with_kb(kb_a);
    p.start_trace(&t1, "one", OperationType::Chat, None);
    let s1 = p.log_llm_call(&t1, llm("gpt-4o"));
    p.end_trace(&t1, Outcome::success(), TraceTotals::default());
    let t2 = ctx().with_kb(kb_b);
    p.start_trace(&t2, "two", OperationType::Chat, None);
    p.log_llm_call(&t2, llm("claude"));
    p.log_chat_message(&t2, ChatMessage::new(ChatRole::Assistant, "answer"));
    p.end_trace(&t2, Outcome::success(), TraceTotals::default());
    flushed(&guard);
    let message: Uuid = sqlx::query_scalar("SELECT id FROM observability.chat_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let missing = TraceId::new();
    let score = |trace, name: &str, value| Score::new(trace, name, value);
    use ScoreValue::{Bool, Categorical, Numeric};
    p.log_score(Score {
        span_id: Some(s1),
        ..score(t1.trace_id, "thumbs", Bool(false))
    });
    p.log_score(Score {
        span_id: Some(s1),
        ..score(t1.trace_id, "thumbs", Bool(true))
    });
    p.log_score(score(t1.trace_id, "helpfulness", Numeric(0.8)));
    p.log_score(Score {
        message_id: Some(message),
        ..score(t2.trace_id, "thumbs", Bool(false))
    });
    p.log_score(score(t2.trace_id, "helpfulness", Numeric(0.0)));
    p.log_score(score(t2.trace_id, "topic", Categorical("billing".into())));
    p.log_score(score(missing, "thumbs", Bool(true)));
    let s = flushed(&guard);
    assert_eq!(s.rejected + s.refused, 0, "{s:?}");

    let stats = |by, name: Option<&str>| {
        let q = ScoreStatsQuery {
            name: name.map(str::to_owned),
            ..ScoreStatsQuery::last_days(by, 1)
        };
        let pool = db.pool.clone();
        async move { query::score_stats(&pool, &q).await.unwrap() }
    };
    // (key, name, count, valued, mean, negatives, share)
    type Row = (
        Option<String>,
        String,
        i64,
        i64,
        Option<f64>,
        i64,
        Option<f64>,
    );
    fn rows(stats: Vec<ScoreStat>) -> Vec<Row> {
        stats
            .into_iter()
            .map(|s| {
                (
                    s.key,
                    s.name,
                    s.count,
                    s.valued,
                    s.mean.map(|m| (m * 1e9).round() / 1e9),
                    s.negatives,
                    s.negative_share,
                )
            })
            .collect()
    }
    let k = |s: &str| Some(s.to_owned());
    let n = |s: &str| s.to_owned();

    assert_eq!(
        rows(stats(ScoreBy::Name, None).await),
        [
            // 0.8 and 0.0; 0.0 is negative (at or below 0).
            (None, n("helpfulness"), 2, 2, Some(0.4), 1, Some(0.5)),
            // false, true, false, true.
            (None, n("thumbs"), 4, 4, Some(0.5), 2, Some(0.5)),
            // A label: counted, never averaged nor negative.
            (None, n("topic"), 1, 0, None, 0, None),
        ]
    );
    assert_eq!(
        rows(stats(ScoreBy::Model, None).await),
        [
            (k("claude"), n("helpfulness"), 1, 1, Some(0.0), 1, Some(1.0)),
            (k("claude"), n("thumbs"), 1, 1, Some(0.0), 1, Some(1.0)),
            (k("claude"), n("topic"), 1, 0, None, 0, None),
            (k("gpt-4o"), n("helpfulness"), 1, 1, Some(0.8), 0, Some(0.0)),
            (k("gpt-4o"), n("thumbs"), 2, 2, Some(0.5), 1, Some(0.5)),
            // The trace that is not stored has no model.
            (None, n("thumbs"), 1, 1, Some(1.0), 0, Some(0.0)),
        ]
    );
    let (a, b) = (kb_a.to_string(), kb_b.to_string());
    let mut by_kb = vec![
        (k(&a), n("helpfulness"), 1, 1, Some(0.8), 0, Some(0.0)),
        (k(&a), n("thumbs"), 2, 2, Some(0.5), 1, Some(0.5)),
        (k(&b), n("helpfulness"), 1, 1, Some(0.0), 1, Some(1.0)),
        (k(&b), n("thumbs"), 1, 1, Some(0.0), 1, Some(1.0)),
        (k(&b), n("topic"), 1, 0, None, 0, None),
    ];
    by_kb.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    by_kb.push((None, n("thumbs"), 1, 1, Some(1.0), 0, Some(0.0)));
    assert_eq!(rows(stats(ScoreBy::Kb, Some("thumbs")).await), {
        by_kb
            .iter()
            .filter(|r| r.1 == "thumbs")
            .cloned()
            .collect::<Vec<_>>()
    });
    assert_eq!(rows(stats(ScoreBy::Kb, None).await), by_kb);
    let today = Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        rows(stats(ScoreBy::Day, Some("thumbs")).await),
        [(k(&today), n("thumbs"), 4, 4, Some(0.5), 2, Some(0.5))]
    );
    // Outside the time range: nothing.
    let q = ScoreStatsQuery {
        to: Utc::now() - TimeDelta::days(1),
        ..ScoreStatsQuery::last_days(ScoreBy::Name, 2)
    };
    assert!(query::score_stats(&db.pool, &q).await.unwrap().is_empty());
}

/// Retention drops scores with the partitions of their day, like the other tables.
#[tokio::test]
async fn scores_have_partitions_ahead_and_are_pruned_with_them() {
    let db = fresh_db().await;
    let list = partitions::list(&db.pool).await.unwrap();
    let today = Utc::now().date_naive();
    assert!(
        list.iter()
            .any(|p| p.table_name == "scores" && p.is_default),
        "{list:?}"
    );
    assert!(
        list.iter()
            .any(|p| p.table_name == "scores"
                && p.range_from.is_some_and(|f| f.date_naive() == today)),
        "{list:?}"
    );
    // A score given 200 days ago (in the default partition until its day has one).
    sqlx::query(
        "INSERT INTO observability.scores (id, trace_id, name, data_type, value_bool, source, \
         created_at) VALUES ($1, $2, 'thumbs', 'boolean', true, 'user', \
         now() - interval '200 days')",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .execute(&db.pool)
    .await
    .unwrap();
    partitions::create_ahead(&db.pool, &PartitionPolicy::default())
        .await
        .unwrap();
    let report = partitions::prune(&db.pool, Duration::from_secs(90 * 86_400), false)
        .await
        .unwrap();
    assert!(
        report.partitions.iter().any(|p| p.table_name == "scores"),
        "{report:?}"
    );
    assert_eq!(count(&db.pool, "scores").await, 0);
}

/// A writer role granted its privileges before the scores migration (`ON ALL TABLES`, which
/// covers only the tables of that day) gets the same on `scores` from the migration, and
/// writes scores without an operator's new grant.
#[tokio::test]
async fn a_writer_granted_before_the_migration_can_write_scores_after_it() {
    let db = common::db_migrated_before(20261207000001).await;
    let role = format!("tpg_writer_{}", &db.name[db.name.len() - 12..]);
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE ON SCHEMA observability TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA observability TO {role}"),
        format!("GRANT TEMPORARY ON DATABASE {} TO {role}", db.name),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    migrate(&db.pool).await.unwrap();
    let granted: Vec<bool> = sqlx::query_scalar(
        "SELECT has_table_privilege($1, 'observability.scores', p) \
         FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p",
    )
    .bind(&role)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(granted, [true, true, true, false]);

    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let (p, guard) = Builder::new(&url).build().unwrap();
    let trace = TraceId::new();
    p.log_score(Score::new(trace, "thumbs", ScoreValue::Bool(true)));
    let s = flushed(&guard);
    assert_eq!((s.written, s.refused), (1, 0), "{s:?}");
    assert_eq!(scores_of(&db.pool, trace.as_uuid()).await.len(), 1);
    drop(guard);
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
}

/// The score fields are well-known names now, yet on a span (not an event) they are no score:
/// kept in the span's metadata as before, and no score is written.
#[tokio::test]
async fn score_fields_on_a_span_stay_in_its_metadata() {
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("request").entered();
        let _span = tracing::info_span!("rank", score_name = "bm25", score_value = 3_i64).entered();
    });
    flushed(&guard);
    let metadata: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM observability.spans WHERE name = 'rank'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({"score_name": "bm25", "score_value": 3})
    );
    assert_eq!(count(&db.pool, "scores").await, 0);
}
