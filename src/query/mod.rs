//! Reading the data back: a trace with its span tree, recent traces filtered and paged, a
//! chat session's history, recent sessions, a document's timeline, recent failed ingestion
//! steps, usage statistics, and scores with their aggregates.
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
mod scores;
mod sessions;
mod sql;
mod traces;
mod usage;

pub use chat::{Message, chat_history, trace_messages};
pub use documents::{DocumentStep, document_timeline, failed_steps, trace_document_steps};
pub use scores::{
    ScoreBy, ScoreStat, ScoreStatsQuery, StoredScore, message_scores, score_stats, trace_scores,
};
pub use sessions::{SessionSummary, recent_sessions};
pub use traces::{
    Cursor, Page, Span, Trace, TraceFilter, TraceTree, recent_traces, span_counts, trace_tree,
};
pub use usage::{Bucket, Usage, UsageBy, UsageQuery, usage, usage_raw};
