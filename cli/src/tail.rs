//! `tail`: traces printed as they finish.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sqlx::PgPool;
use tracing_postgres::Uuid;
use tracing_postgres::query::{self, Trace, TraceFilter};

use crate::style::{self, paint};
use crate::text::{fit, one_line};

/// Traces shown when tail starts, before new ones.
const BACKLOG: usize = 10;

/// What `tail` shows, and how often it looks.
pub struct Options {
    pub interval: Duration,
    pub operation: Option<String>,
    pub errors: bool,
    pub count: Option<usize>,
    /// How far back a trace's start is looked for: a trace that ran longer is missed.
    pub window: Duration,
}

pub async fn run(pool: &PgPool, out: &mut impl Write, o: &Options) -> Result<(), crate::Error> {
    // At most a year back: a longer window would only make every poll read more.
    let lookback = TimeDelta::from_std(o.window)
        .unwrap_or(TimeDelta::days(365))
        .min(TimeDelta::days(365));
    let mut seen: HashMap<Uuid, chrono::DateTime<Utc>> = HashMap::new();
    let mut printed = 0usize;
    let mut first = true;
    loop {
        let filter = TraceFilter {
            operation_type: o.operation.clone(),
            status: o.errors.then(|| "error".to_owned()),
            finished: true,
            from: Some(Utc::now() - lookback),
            limit: 1000,
            ..Default::default()
        };
        let page = query::recent_traces(pool, &filter).await?;
        let mut new: Vec<Trace> = page
            .items
            .into_iter()
            .filter(|t| !seen.contains_key(&t.id))
            .collect();
        for t in &new {
            seen.insert(t.id, t.started_at);
        }
        // Oldest first, by end; on start only the last few.
        new.sort_by_key(|t| (t.ended_at, t.started_at));
        if first {
            let skip = new.len().saturating_sub(BACKLOG);
            new.drain(..skip);
            first = false;
        }
        for t in &new {
            writeln!(out, "{}", line(t))?;
            out.flush()?;
            printed += 1;
            if o.count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
        let horizon = Utc::now() - lookback;
        seen.retain(|_, started| *started >= horizon);
        tokio::time::sleep(o.interval).await;
    }
}

fn line(t: &Trace) -> String {
    let when = t.ended_at.unwrap_or(t.started_at).format("%T%.3f");
    let mut s = format!(
        "{} {} {} {} {:>10}",
        paint(style::DIM, when),
        paint(style::of_status(&t.status), format!("{:<7}", t.status)),
        fit(&one_line(&t.operation_type, 12), 12),
        fit(&one_line(&t.name, 28), 28),
        t.duration_ms
            .map_or("-".to_owned(), |ms| format!("{ms:.1} ms")),
    );
    if let Some(tokens) = t.total_tokens {
        s.push_str(&format!("  {tokens} tok"));
    }
    if let Some(cost) = t.total_cost_usd {
        s.push_str(&format!("  ${}", cost.normalize()));
    }
    s.push_str(&format!("  {}", paint(style::DIM, t.w3c_id())));
    if let Some(e) = t.error_type.as_deref() {
        s.push_str(&format!("  {}", paint(style::ERROR, one_line(e, 60))));
    }
    s
}
