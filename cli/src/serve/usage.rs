//! `/usage`: calls, tokens, cost, latency percentiles and error rate per time bucket, by
//! model, knowledge base or user, as SVG charts drawn here and as a table.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use tracing_postgres::query::{self, Bucket, Usage, UsageBy, UsageQuery};

use super::error::WebError;
use super::format::{self, cost, ms, num};
use super::traces::since_param;
use super::{AppState, page};

/// Keys drawn in the charts (the most called of those the table has).
const MAX_SERIES: usize = 8;
/// Keys with rows of their own in the table unless `top` says otherwise: the ones with the
/// highest cost; the others are summed in one row per bucket. The query reads only these, so
/// a range with thousands of users stays a page of a few rows per bucket.
const DEFAULT_TOP: usize = 10;
/// The most `top` may ask for.
const MAX_TOP: usize = 1000;
const W: f64 = 640.0;
const H: f64 = 150.0;

/// `?by=model|kb|user|span_type&bucket=hour|day|week&since=24h&top=10`.
#[derive(Debug, Deserialize)]
pub struct UsageParams {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    top: Option<String>,
}

/// The page.
pub async fn page(
    State(state): State<AppState>,
    Query(p): Query<UsageParams>,
) -> Result<Html<String>, WebError> {
    let by_s = p.by.as_deref().unwrap_or("model");
    let by = match by_s {
        "model" => UsageBy::Model,
        "kb" => UsageBy::Kb,
        "user" => UsageBy::User,
        "span_type" => UsageBy::SpanType,
        _ => {
            return Err(WebError::BadRequest(
                "by is model, kb, user or span_type".into(),
            ));
        }
    };
    let now = Utc::now();
    let (since, from) = since_param(p.since.as_deref(), "24h", now)?;
    let bucket_s = p.bucket.as_deref().filter(|s| !s.is_empty()).unwrap_or(
        if now - from > chrono::TimeDelta::days(3) {
            "day"
        } else {
            "hour"
        },
    );
    let bucket = match bucket_s {
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        "week" => Bucket::Week,
        _ => return Err(WebError::BadRequest("bucket is hour, day or week".into())),
    };
    let top = match p.top.as_deref().filter(|s| !s.is_empty()) {
        None => DEFAULT_TOP,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| WebError::BadRequest(format!("top is a number from 1 to {MAX_TOP}")))?,
    };
    let rows = query::usage(
        &state.pool,
        &UsageQuery {
            by,
            bucket,
            from,
            to: now,
            top: Some(top),
        },
    )
    .await?;
    let content = html! {
        h1 { "Usage" }
        form.filters method="get" action="/usage" {
            label { "By " select name="by" {
                @for v in ["model", "kb", "user", "span_type"] { option value=(v) selected[v == by_s] { (v) } }
            } }
            label { "Per " select name="bucket" {
                @for v in ["hour", "day", "week"] { option value=(v) selected[v == bucket_s] { (v) } }
            } }
            label { "Since " input name="since" value=(since) placeholder="24h, 30d or a time"; }
            label { "Top " input name="top" type="number" min="1" max=(MAX_TOP) value=(top); }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() {
            p.empty { "No usage in this range." }
        } @else {
            (charts(&rows))
            h2 { "Table" }
            table.list #usage-table {
                thead { tr {
                    th { "Bucket (UTC)" } th { (by_s) } th.n { "Calls" } th.n { "Prompt" }
                    th.n { "Completion" } th.n { "Cost" } th.n { "p50" } th.n { "p95" } th.n { "Errors" }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td.t { (format::time(r.bucket)) }
                            td { (format::cut(key_of(r), 120).0) }
                            td.n { (num(Some(r.calls))) }
                            td.n { (num(Some(r.prompt_tokens))) }
                            td.n { (num(Some(r.completion_tokens))) }
                            td.n { (cost(Some(r.cost_usd))) }
                            td.n { (ms(r.p50_ms)) }
                            td.n { (ms(r.p95_ms)) }
                            td.n { (format!("{:.1}%", r.error_rate * 100.0)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::layout("Usage", "usage", content))
}

/// A row's key as shown: the key, or what stands in for it.
fn key_of(r: &Usage) -> &str {
    match (&r.key, r.others) {
        (Some(k), _) => k,
        (None, true) => "(other keys)",
        (None, false) => "(none)",
    }
}

fn charts(rows: &[Usage]) -> Markup {
    let mut buckets: Vec<DateTime<Utc>> = rows.iter().map(|r| r.bucket).collect();
    buckets.sort();
    buckets.dedup();
    let mut calls: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        *calls.entry(key_of(r)).or_default() += r.calls;
    }
    let mut keys: Vec<(&str, i64)> = calls.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let omitted = keys.len().saturating_sub(MAX_SERIES);
    keys.truncate(MAX_SERIES);
    let metrics: [(&str, Metric); 5] = [
        ("Calls", |r| r.calls as f64),
        ("Tokens", |r| {
            r.prompt_tokens.saturating_add(r.completion_tokens) as f64
        }),
        ("Cost (USD)", |r| r.cost_usd.to_f64().unwrap_or(0.0)),
        ("p95 latency (ms)", |r| r.p95_ms.unwrap_or(0.0)),
        ("Error rate (%)", |r| r.error_rate * 100.0),
    ];
    html! {
        div.legend {
            @for (i, (k, _)) in keys.iter().enumerate() {
                span.key.(format!("k{i}")) { (format::cut(k, 60).0) }
            }
            @if omitted > 0 { span.hint { " and " (omitted) " more in the table" } }
        }
        div.charts {
            @for (title, value) in metrics {
                (chart(title, rows, &buckets, &keys, value))
            }
        }
    }
}

/// One figure of a usage row, as drawn.
type Metric = fn(&Usage) -> f64;

fn chart(
    title: &str,
    rows: &[Usage],
    buckets: &[DateTime<Utc>],
    keys: &[(&str, i64)],
    value: Metric,
) -> Markup {
    let max = rows
        .iter()
        .map(value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let x = |b: &DateTime<Utc>| {
        let i = buckets.binary_search(b).unwrap_or(0);
        if buckets.len() <= 1 {
            W / 2.0
        } else {
            i as f64 / (buckets.len() - 1) as f64 * (W - 20.0) + 10.0
        }
    };
    let y = |v: f64| H - 10.0 - (v / top).clamp(0.0, 1.0) * (H - 30.0);
    html! {
        figure.chart {
            figcaption { (title) " · max " (format!("{max:.6}").trim_end_matches('0').trim_end_matches('.')) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                line.axis x1="0" y1=(H - 10.0) x2=(W) y2=(H - 10.0) {}
                @for (i, (k, _)) in keys.iter().enumerate() {
                    @let pts: Vec<(f64, f64)> = rows.iter().filter(|r| key_of(r) == *k).map(|r| (x(&r.bucket), y(value(r)))).collect();
                    @let line: String = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ");
                    g.(format!("k{i}")) {
                        polyline points=(line) {}
                        @for (a, b) in &pts { circle cx=(format!("{a:.1}")) cy=(format!("{b:.1}")) r="2.5" {} }
                    }
                }
                @if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
                    text x="4" y=(H - 1.0) { (first.format("%m-%d %H:%M")) }
                    text x=(W - 4.0) y=(H - 1.0) text-anchor="end" { (last.format("%m-%d %H:%M")) }
                }
            }
        }
    }
}
