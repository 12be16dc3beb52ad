//! The query API, on rows written by the provider into a real server.

use tracing_postgres_test_support as common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::fresh_db;
use rust_decimal::Decimal;
use serde_json::json;
use tracing_postgres::query::{self, Bucket, TraceFilter, UsageBy, UsageQuery};
use tracing_postgres::*;
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);

fn llm(model: &str, latency_ms: f64, prompt: i64, completion: i64, cost: &str) -> LlmCall {
    LlmCall {
        latency_ms: Some(latency_ms),
        metrics: LlmMetrics {
            model: Some(model.into()),
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
            cost_usd: Some(cost.parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn trace_tree_returns_the_trace_and_its_spans_in_tree_order() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = TraceContext::new();
    p.start_trace(&ctx, "answer", OperationType::Chat, None);
    let retrieve = p.start_span(&ctx, "retrieve", SpanType::Retrieval, None);
    let rerank = p.start_span(&ctx.child(retrieve), "rerank", SpanType::Rerank, None);
    p.end_span(&ctx.child(retrieve), rerank, SpanEnd::default());
    p.end_span(&ctx, retrieve, SpanEnd::default());
    let generate = p.start_span(&ctx, "generate", SpanType::Internal, None);
    p.log_llm_call(&ctx.child(generate), llm("gpt-4o", 5.0, 100, 20, "0.001"));
    p.end_span(&ctx, generate, SpanEnd::default());
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    // Another trace, not to be mixed in.
    let other = TraceContext::new();
    p.log_llm_call(&other, llm("gpt-4o", 5.0, 1, 1, "0.0"));
    assert!(guard.flush(FLUSH));

    let tree = query::trace_tree(&db.pool, ctx.trace_id.as_uuid())
        .await
        .unwrap()
        .expect("the trace");
    let trace = tree.trace.as_ref().expect("its row");
    assert_eq!(trace.name, "answer");
    assert_eq!(trace.status, "success");
    assert_eq!(trace.w3c_id(), ctx.trace_id.to_string());
    assert_eq!(trace.total_tokens, Some(120));
    let walked: Vec<(usize, &str)> = tree
        .walk()
        .into_iter()
        .map(|(d, s)| (d, s.name.as_str()))
        .collect();
    assert_eq!(
        walked,
        [
            (0, "retrieve"),
            (1, "rerank"),
            (0, "generate"),
            (1, "llm_call")
        ]
    );
    let (start, end) = tree.bounds().unwrap();
    let first = tree.spans.iter().map(|s| s.started_at).min().unwrap();
    assert_eq!(start, trace.started_at.min(first));
    assert!(end >= trace.ended_at.unwrap());
    let llm_span = &tree.walk()[3].1;
    assert_eq!(llm_span.tokens(), Some(120));
    assert_eq!(llm_span.model.as_deref(), Some("gpt-4o"));

    // Spans without a trace row still make a tree; an unknown id makes none.
    let orphan = query::trace_tree(&db.pool, other.trace_id.as_uuid())
        .await
        .unwrap()
        .unwrap();
    assert!(orphan.trace.is_none());
    assert_eq!(orphan.spans.len(), 1);
    assert!(
        query::trace_tree(&db.pool, Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn trace_tree_finds_a_trace_whose_id_carries_no_time() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    // A W3C trace id from an upstream service: random, not a UUIDv7.
    let nanos = Utc::now().timestamp_nanos_opt().unwrap() as u128;
    let id =
        uuid::Builder::from_random_bytes((nanos * 0x9e37_79b9_7f4a_7c15).to_le_bytes()).into_uuid();
    assert_eq!(id.get_version_num(), 4);
    let mut ctx = TraceContext::new();
    ctx.trace_id = TraceId::from(id);
    p.start_trace(&ctx, "upstream", OperationType::Search, None);
    p.log_llm_call(&ctx, llm("m", 1.0, 1, 1, "0"));
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));
    let tree = query::trace_tree(&db.pool, id).await.unwrap().unwrap();
    assert_eq!(tree.trace.unwrap().name, "upstream");
    assert_eq!(tree.spans.len(), 1);
}

#[tokio::test]
async fn recent_traces_filters_by_each_field_and_pages_without_gaps_or_repeats() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let (alice, bob, kb) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut ctx = TraceContext::new()
            .with_user(if i % 2 == 0 { alice } else { bob })
            .with_session(format!("s{}", i % 3));
        if i < 3 {
            ctx = ctx.with_kb(kb);
        }
        let op = if i % 3 == 0 {
            OperationType::Document
        } else {
            OperationType::Chat
        };
        let name = if i == 5 { "100% refund_request" } else { "ask" };
        p.start_trace(&ctx, name, op, None);
        let outcome = if i == 4 {
            Outcome::error("Timeout", "the model timed out")
        } else {
            Outcome::success()
        };
        if i != 6 {
            p.end_trace(&ctx, outcome, TraceTotals::default());
        }
        ids.push(ctx.trace_id.as_uuid());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(guard.flush(FLUSH));

    let get = |f: TraceFilter| {
        let pool = db.pool.clone();
        async move {
            query::recent_traces(&pool, &f)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    assert_eq!(get(TraceFilter::default()).await, newest_first);
    let pick = |is: &[usize]| -> Vec<Uuid> { is.iter().rev().map(|&i| ids[i]).collect() };
    let f = TraceFilter {
        operation_type: Some("document".into()),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[0, 3, 6]));
    let f = TraceFilter {
        status: Some("error".into()),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[4]));
    let f = TraceFilter {
        finished: true,
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[0, 1, 2, 3, 4, 5]));
    let f = TraceFilter {
        user_id: Some(bob),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[1, 3, 5]));
    let f = TraceFilter {
        kb_id: Some(kb),
        user_id: Some(alice),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[0, 2]));
    let f = TraceFilter {
        session_id: Some("s1".into()),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[1, 4]));
    // Text: in the name or the error message, case-insensitive, wildcards taken literally.
    let f = TraceFilter {
        text: Some("TIMED OUT".into()),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[4]));
    let f = TraceFilter {
        text: Some("100% refund_".into()),
        ..Default::default()
    };
    assert_eq!(get(f).await, pick(&[5]));
    let f = TraceFilter {
        text: Some("1_0".into()),
        ..Default::default()
    };
    assert!(get(f).await.is_empty());
    // Time range.
    let f = TraceFilter {
        from: Some(Utc::now() + TimeDelta::hours(1)),
        ..Default::default()
    };
    assert!(get(f).await.is_empty());
    let f = TraceFilter {
        from: Some(Utc::now() - TimeDelta::hours(1)),
        to: Some(Utc::now() + TimeDelta::hours(1)),
        ..Default::default()
    };
    assert_eq!(get(f).await.len(), 7);

    // Pages of 3: 3 + 3 + 1, newest first, each trace once.
    let mut filter = TraceFilter {
        limit: 3,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = query::recent_traces(&db.pool, &filter).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next {
            Some(c) => filter.before = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
}

#[tokio::test]
async fn chat_history_is_in_turn_order_with_sources_and_citations() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_kb(Uuid::now_v7())
        .with_session("chat-42");
    let doc = Uuid::now_v7();
    // Written out of order.
    for (turn, role, text) in [
        (2, ChatRole::User, "and in 2025?"),
        (0, ChatRole::User, "revenue in 2024?"),
        (1, ChatRole::Assistant, "12M [1]"),
    ] {
        let mut m = ChatMessage::new(role, text);
        m.turn_number = Some(turn);
        if turn == 1 {
            m.sources = vec![Source {
                doc_id: Some(doc),
                chunk_id: Some("c7".into()),
                score: Some(0.91),
                ..Default::default()
            }];
            m.citations = vec![Citation {
                marker: "[1]".into(),
                doc_id: Some(doc),
                page: Some(3),
                ..Default::default()
            }];
            m.completion_tokens = Some(9);
        }
        p.log_chat_message(&ctx, m);
    }
    let elsewhere = TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_kb(Uuid::now_v7())
        .with_session("chat-43");
    p.log_chat_message(&elsewhere, ChatMessage::new(ChatRole::User, "hi"));
    assert!(guard.flush(FLUSH));

    let history = query::chat_history(&db.pool, "chat-42").await.unwrap();
    let turns: Vec<(Option<i32>, &str)> = history
        .iter()
        .map(|m| (m.turn_number, m.content.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (Some(0), "revenue in 2024?"),
            (Some(1), "12M [1]"),
            (Some(2), "and in 2025?")
        ]
    );
    let answer = &history[1];
    assert_eq!(answer.role, "assistant");
    assert_eq!(answer.trace_id, ctx.trace_id.as_uuid());
    assert_eq!(answer.sources[0]["doc_id"], json!(doc));
    assert_eq!(answer.sources[0]["score"], json!(0.91));
    assert_eq!(answer.citations[0]["marker"], json!("[1]"));
    assert_eq!(answer.citations[0]["page"], json!(3));
    assert_eq!(answer.completion_tokens, Some(9));
    assert!(
        query::chat_history(&db.pool, "nope")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn document_timeline_lists_the_documents_steps_in_time_order() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = TraceContext::new();
    let (doc, other) = (Uuid::now_v7(), Uuid::now_v7());
    use DocumentEventStatus::*;
    use DocumentEventType::*;
    // Durations back-date the starts: parse started 300 ms ago, chunk 200, embed 100.
    for (ty, status, ms) in [
        (Embed, Failed, 100.0),
        (Parse, Completed, 300.0),
        (Chunk, Completed, 200.0),
    ] {
        let failed = matches!(status, Failed);
        let mut e = DocumentEvent::new(doc, ty, status);
        e.duration_ms = Some(ms);
        if failed {
            e.error_type = Some("RateLimit".into());
            e.retryable = Some(true);
        }
        p.log_document_event(&ctx, e);
    }
    p.log_document_event(&ctx, DocumentEvent::new(other, Upload, Completed));
    assert!(guard.flush(FLUSH));

    let steps = query::document_timeline(&db.pool, doc).await.unwrap();
    let order: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.event_type.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("parse", "completed"),
            ("chunk", "completed"),
            ("embed", "failed")
        ]
    );
    assert_eq!(steps[2].error_type.as_deref(), Some("RateLimit"));
    assert_eq!(steps[2].retryable, Some(true));
    assert!(steps.windows(2).all(|w| w[0].started_at <= w[1].started_at));
}

#[tokio::test]
async fn usage_sums_tokens_and_cost_and_gives_percentiles_and_error_rate() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let (kb, user) = (Uuid::now_v7(), Uuid::now_v7());
    let ctx = TraceContext::new().with_kb(kb).with_user(user);
    p.start_trace(&ctx, "t", OperationType::Chat, None);
    for ms in 1..=20 {
        let mut call = llm("gpt-4o", f64::from(ms) * 10.0, 100, 10, "0.0015");
        if ms == 20 {
            call.outcome = Outcome::error("RateLimit", "429");
        }
        p.log_llm_call(&ctx, call);
    }
    p.log_llm_call(&ctx, llm("small", 5.0, 7, 3, "0.000001"));
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));

    let day = UsageQuery {
        by: UsageBy::Model,
        bucket: Bucket::Day,
        from: Utc::now() - TimeDelta::days(1),
        to: Utc::now() + TimeDelta::hours(1),
        top: None,
    };
    let rows = query::usage(&db.pool, &day).await.unwrap();
    let big: Vec<_> = rows
        .iter()
        .filter(|r| r.key.as_deref() == Some("gpt-4o"))
        .collect();
    // Calls made a few hundred ms apart can straddle a day boundary: add the buckets.
    let calls: i64 = big.iter().map(|r| r.calls).sum();
    assert_eq!(calls, 20);
    assert_eq!(big.iter().map(|r| r.prompt_tokens).sum::<i64>(), 2000);
    assert_eq!(big.iter().map(|r| r.completion_tokens).sum::<i64>(), 200);
    assert_eq!(
        big.iter().map(|r| r.cost_usd).sum::<Decimal>(),
        "0.03".parse::<Decimal>().unwrap()
    );
    if big.len() == 1 {
        let r = big[0];
        // Durations 10, 20, ..., 200 ms: median 105, 95th percentile 190.5 (interpolated).
        assert!((r.p50_ms.unwrap() - 105.0).abs() < 0.01, "{r:?}");
        assert!((r.p95_ms.unwrap() - 190.5).abs() < 0.01, "{r:?}");
        assert!((r.error_rate - 0.05).abs() < 1e-9, "{r:?}");
    }
    assert!(rows.iter().any(|r| r.key.as_deref() == Some("small")));

    for (by, key) in [(UsageBy::Kb, kb), (UsageBy::User, user)] {
        let q = UsageQuery { by, ..day.clone() };
        let rows = query::usage(&db.pool, &q).await.unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!(r.key, Some(key.to_string()));
        assert_eq!(r.calls, 1);
        assert_eq!(r.prompt_tokens, 2007);
        assert_eq!(r.completion_tokens, 203);
        assert_eq!(r.error_rate, 0.0);
    }
    // Hourly buckets start on the hour.
    let hourly = query::usage(&db.pool, &UsageQuery::last_24h(UsageBy::Model))
        .await
        .unwrap();
    assert!(!hourly.is_empty());
    assert!(
        hourly
            .iter()
            .all(|r| r.bucket.timestamp() % 3600 == 0
                && r.bucket > Utc::now() - TimeDelta::hours(25))
    );
}

#[tokio::test]
async fn the_viewers_queries_sessions_a_traces_messages_and_steps_failed_steps_span_counts_model() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut traces = Vec::new();
    // Session "a": two requests (one failed), session "b": one; a trace without a session.
    for (session, model, ok) in [
        ("a", "gpt-4o", true),
        ("a", "gpt-4o-mini", false),
        ("b", "gpt-4o", true),
    ] {
        let ctx = TraceContext::new()
            .with_user(user)
            .with_kb(kb)
            .with_session(session);
        p.start_trace(&ctx, "chat", OperationType::Chat, None);
        p.log_llm_call(&ctx, llm(model, 5.0, 100, 10, "0.5"));
        p.log_llm_call(&ctx, llm(model, 5.0, 100, 10, "0.5"));
        p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, "q"));
        let mut e = DocumentEvent::new(doc, DocumentEventType::Embed, DocumentEventStatus::Failed);
        e.error_message = Some("timeout".into());
        p.log_document_event(&ctx, e);
        let outcome = if ok {
            Outcome::success()
        } else {
            Outcome::error("E", "failed")
        };
        p.end_trace(&ctx, outcome, TraceTotals::default());
        traces.push(ctx.trace_id.as_uuid());
        std::thread::sleep(Duration::from_millis(5));
    }
    let lone = TraceContext::new();
    p.start_trace(&lone, "lone", OperationType::Search, None);
    p.end_trace(&lone, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));

    let (from, to) = (
        Utc::now() - TimeDelta::hours(1),
        Utc::now() + TimeDelta::hours(1),
    );
    let sessions = query::recent_sessions(&db.pool, from, to, 10)
        .await
        .unwrap();
    let got: Vec<(&str, i64, i64, i64)> = sessions
        .iter()
        .map(|s| (s.session_id.as_str(), s.turns, s.total_tokens, s.errors))
        .collect();
    // Latest activity first: "b" wrote last.
    assert_eq!(got, vec![("b", 1, 220, 0), ("a", 2, 440, 1)]);
    assert_eq!(sessions[1].user_id, Some(user));
    assert_eq!(sessions[1].cost_usd, Decimal::from(2));
    assert!(sessions[1].first_at < sessions[1].last_at);
    // Out of the range: none.
    let none = query::recent_sessions(&db.pool, to, to + TimeDelta::hours(1), 10)
        .await
        .unwrap();
    assert!(none.is_empty());

    let msgs = query::trace_messages(&db.pool, traces[0], from, to)
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].trace_id, traces[0]);
    let steps = query::trace_document_steps(&db.pool, traces[1], from, to)
        .await
        .unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].trace_id, traces[1]);
    let failed = query::failed_steps(&db.pool, from, 2).await.unwrap();
    assert_eq!(failed.len(), 2, "the limit");
    assert!(failed[0].started_at >= failed[1].started_at, "newest first");
    assert_eq!(failed[0].trace_id, traces[2]);

    let page = query::recent_traces(&db.pool, &TraceFilter::default())
        .await
        .unwrap();
    let counts = query::span_counts(&db.pool, &page.items).await.unwrap();
    for t in &traces {
        assert_eq!(counts.get(t), Some(&2));
    }
    assert_eq!(counts.get(&lone.trace_id.as_uuid()), None, "no spans");
    assert!(query::span_counts(&db.pool, &[]).await.unwrap().is_empty());

    let mini = TraceFilter {
        model: Some("gpt-4o-mini".into()),
        ..Default::default()
    };
    let page = query::recent_traces(&db.pool, &mini).await.unwrap();
    let ids: Vec<Uuid> = page.items.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![traces[1]]);
}
