//! Reading the data back: a trace with its span tree, recent traces filtered and paged, a
//! chat session's history, a document's timeline, and usage statistics.
//!
//! Each function is one indexed query (two for a trace: its row and its spans) over any
//! executor (`&PgPool`, `&mut PgConnection`), with the time bounds that let PostgreSQL skip
//! every partition outside them. The plans, on 10 million spans, are in `docs/queries.md`;
//! `./scripts/bench-queries` measures them.
//!
//! ```no_run
//! # async fn f(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! use tracing_postgres::query::{self, TraceFilter, UsageBy, UsageQuery};
//!
//! // The last 20 failed chat requests.
//! let page = query::recent_traces(&pool, &TraceFilter {
//!     operation_type: Some("chat".into()),
//!     status: Some("error".into()),
//!     limit: 20,
//!     ..Default::default()
//! }).await?;
//! for t in &page.items {
//!     let tree = query::trace_tree(&pool, t.id).await?;
//!     println!("{} {} spans", t.name, tree.map_or(0, |tree| tree.spans.len()));
//! }
//! // Tokens and cost by model over the last 24 hours, per hour.
//! for row in query::usage(&pool, &UsageQuery::last_24h(UsageBy::Model)).await? {
//!     println!("{} {:?} {} calls {} USD", row.bucket, row.key, row.calls, row.cost_usd);
//! }
//! # Ok(())
//! # }
//! ```

mod chat;
mod documents;
mod traces;
mod usage;

pub use chat::{Message, chat_history};
pub use documents::{DocumentStep, document_timeline};
pub use traces::{Cursor, Page, Span, Trace, TraceFilter, TraceTree, recent_traces, trace_tree};
pub use usage::{Bucket, Usage, UsageBy, UsageQuery, usage};

/// A select list: the columns but those in `skip`, with each timestamp column clamped to years
/// 1 to 9999, so a hand-written `infinity` in the table reads as a far date instead of failing
/// to decode.
fn select_list(columns: &[&str], timestamps: &[&str], skip: &[&str]) -> String {
    columns
        .iter()
        .filter(|c| !skip.contains(c))
        .map(|c| {
            if timestamps.contains(c) {
                format!(
                    "least(greatest({c}, '0001-01-01 00:00:00+00'), '9999-12-31 00:00:00+00') AS {c}"
                )
            } else {
                (*c).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` as a `LIKE` pattern matching it anywhere, its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_text_match_themselves() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn timestamp_columns_are_clamped_skipped_ones_left_out_and_others_kept() {
        let s = select_list(
            &["id", "span_id", "started_at"],
            &["started_at"],
            &["span_id"],
        );
        assert!(s.starts_with("id, least(greatest(started_at,"));
        assert!(s.ends_with("AS started_at"));
    }
}
