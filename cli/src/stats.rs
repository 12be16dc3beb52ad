//! `stats`: usage per bucket as a table.

use std::io::Write;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tracing_postgres::query::{self, Bucket, UsageBy, UsageQuery};

use crate::style::{self, paint};

pub async fn run(
    pool: &PgPool,
    out: &mut impl Write,
    by: UsageBy,
    bucket: Bucket,
    since: Duration,
    top: Option<usize>,
) -> Result<(), crate::Error> {
    let to = Utc::now();
    // A span too long for a date goes back to the epoch rather than overflowing.
    let from = TimeDelta::from_std(since)
        .ok()
        .and_then(|d| to.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::UNIX_EPOCH);
    let rows = query::usage(
        pool,
        &UsageQuery {
            by,
            bucket,
            from,
            to,
            top,
        },
    )
    .await?;
    let key = match by {
        UsageBy::Model => "model",
        UsageBy::Kb => "kb",
        UsageBy::User => "user",
        UsageBy::SpanType => "span type",
    };
    writeln!(
        out,
        "{}",
        paint(
            style::BOLD,
            format!(
                "{:<16} {:<36} {:>8} {:>12} {:>12} {:>12} {:>10} {:>10} {:>7}",
                "bucket",
                key,
                "calls",
                "prompt",
                "completion",
                "cost $",
                "p50 ms",
                "p95 ms",
                "err %"
            )
        )
    )?;
    let (mut calls, mut prompt, mut completion, mut cost) = (0i64, 0i64, 0i64, Decimal::ZERO);
    for r in &rows {
        let err = format!("{:.1}", r.error_rate * 100.0);
        let err = if r.error_rate > 0.0 {
            paint(style::ERROR, format!("{err:>7}"))
        } else {
            format!("{err:>7}")
        };
        writeln!(
            out,
            "{:<16} {:<36} {:>8} {:>12} {:>12} {:>12} {:>10} {:>10} {err}",
            r.bucket.format("%F %H:%M"),
            r.key
                .as_deref()
                .unwrap_or(if r.others { "(other keys)" } else { "(none)" }),
            r.calls,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_usd.round_dp(4),
            r.p50_ms.map_or("-".into(), |v| format!("{v:.1}")),
            r.p95_ms.map_or("-".into(), |v| format!("{v:.1}")),
        )?;
        calls += r.calls;
        prompt = prompt.saturating_add(r.prompt_tokens);
        completion = completion.saturating_add(r.completion_tokens);
        cost = cost.checked_add(r.cost_usd).unwrap_or(cost);
    }
    writeln!(
        out,
        "{}",
        paint(
            style::BOLD,
            format!(
                "{:<16} {:<36} {calls:>8} {prompt:>12} {completion:>12} {:>12}",
                "total",
                format!("{} rows", rows.len()),
                cost.round_dp(4)
            )
        )
    )?;
    Ok(())
}
