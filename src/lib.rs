//! Always-on observability for LLM and RAG services, stored in your own PostgreSQL.
//!
//! wip
#![warn(missing_docs)]

mod builder;
mod context;
mod fields;
mod handle;
mod layer;
pub mod migrate;
mod prices;
mod provider;
mod queue;
mod record;
pub mod sanitize;
mod writer;

pub use builder::{BuildError, Builder, ShutdownReport, WriterGuard};
pub use context::{SpanId, TraceContext, TraceId};
pub use layer::PostgresLayer;
pub use prices::PriceTable;
pub use migrate::{MIGRATOR, migrate};
pub use provider::{
    ChatMessage, DocumentEvent, LlmCall, ObservabilityProvider, PostgresProvider, SpanEnd,
    TraceTotals,
};
pub use queue::Stats;
pub use record::{
    ChatRole, ChunkMetrics, Citation, DocumentChunkMetrics, DocumentEmbedMetrics,
    DocumentEventStatus, DocumentEventType, DocumentMetrics, DocumentParseMetrics,
    EmbeddingMetrics, IndexMetrics, LlmMetrics, OperationType, Outcome, ParseMetrics,
    RetrievalMetrics, Source, SpanMetrics, SpanType, Status, micros_to_decimal,
};
pub use rust_decimal::Decimal;
pub use uuid::Uuid;
