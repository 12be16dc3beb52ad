//! Scores in the viewer: a trace's scores under its waterfall (`show`), and score aggregates
//! under the usage table (`stats`). Each prints nothing when there is no score, so a store
//! without scores reads as before.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tracing_postgres::query::{self, ScoreBy, ScoreStatsQuery, StoredScore};

use crate::style::{self, paint};
use crate::text::{fit, one_line};

/// A trace's scores, one line each: name, value, source and author, what it judges, comment.
pub fn print_trace(out: &mut impl Write, scores: &[StoredScore]) -> std::io::Result<()> {
    if scores.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        paint(style::BOLD, format!("scores ({})", scores.len()))
    )?;
    for s in scores {
        let value = one_line(&s.value_text(), 24);
        let value = match (s.value_bool, s.value_numeric) {
            (Some(false), _) => paint(style::ERROR, fit(&value, 12)),
            (_, Some(x)) if x <= 0.0 => paint(style::ERROR, fit(&value, 12)),
            _ => fit(&value, 12),
        };
        let on = match (s.message_id, s.span_id) {
            (Some(m), _) => format!("message {}", m.simple()),
            (None, Some(span)) => format!("span {}", &span.simple().to_string()[16..]),
            (None, None) => "trace".to_owned(),
        };
        let by = match &s.author {
            Some(a) => format!("{} {}", s.source, one_line(a, 24)),
            None => s.source.clone(),
        };
        let comment = s.comment.as_deref().map(|c| one_line(c, 60));
        writeln!(
            out,
            "{} {value} {} {} {}{}",
            fit(&one_line(&s.name, 20), 20),
            fit(&by, 30),
            fit(&on, 41),
            s.created_at.format("%F %T"),
            comment.map_or(String::new(), |c| format!("  {}", paint(style::DIM, c))),
        )?;
    }
    Ok(())
}

/// Score aggregates of the scores given over the last `since`, grouped by `by` (and name),
/// as a table.
pub async fn print_stats(
    pool: &PgPool,
    out: &mut impl Write,
    by: ScoreBy,
    since: Duration,
) -> Result<(), crate::Error> {
    let to = Utc::now();
    // A span too long for a date goes back to the epoch rather than overflowing.
    let from = TimeDelta::from_std(since)
        .ok()
        .and_then(|d| to.checked_sub_signed(d))
        .unwrap_or(DateTime::UNIX_EPOCH);
    let rows = query::score_stats(
        pool,
        &ScoreStatsQuery {
            by,
            name: None,
            from,
            to,
        },
    )
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let key = match by {
        ScoreBy::Name => "",
        ScoreBy::Model => "model",
        ScoreBy::Kb => "kb",
        ScoreBy::Day => "day",
    };
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        paint(
            style::BOLD,
            format!(
                "{:<36} {:<20} {:>8} {:>10} {:>8} {:>7}",
                key, "score", "count", "mean", "neg", "neg %"
            )
        )
    )?;
    for r in &rows {
        let share = r
            .negative_share
            .map_or("-".to_owned(), |s| format!("{:.1}", s * 100.0));
        let share = if r.negative_share.is_some_and(|s| s > 0.0) {
            paint(style::ERROR, format!("{share:>7}"))
        } else {
            format!("{share:>7}")
        };
        writeln!(
            out,
            "{} {} {:>8} {:>10} {:>8} {share}",
            fit(&one_line(r.key.as_deref().unwrap_or("(none)"), 36), 36),
            fit(&one_line(&r.name, 20), 20),
            r.count,
            r.mean.map_or("-".to_owned(), |m| format!("{m:.3}")),
            r.negatives,
        )?;
    }
    Ok(())
}
