#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
mod capture;
pub mod doctor;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod map;
pub mod migrations;
mod model;
pub mod partitions;
pub mod query;
mod queue;
pub mod rollups;
mod schema;
mod writer;

pub use builder::{
    BuildError, Builder, DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_SHUTDOWN_TIMEOUT, ShutdownReport, WriterGuard,
};
#[cfg(feature = "opentelemetry")]
pub use capture::OtelIds;
pub use capture::{ObservabilityProvider, PostgresLayer, PostgresProvider, SpanExt, TraceContext};
pub use map::privacy;
pub use migrations::{MIGRATOR, migrate};
pub use model::health;
pub use model::health::{ErrorKind, WriterError, WriterState};
pub use model::ids::{SpanId, TraceId};
pub use model::inputs::{
    ChatMessage, ChunkMetrics, Citation, DocumentChunkMetrics, DocumentEmbedMetrics, DocumentEvent,
    DocumentMetrics, DocumentParseMetrics, EmbeddingMetrics, IndexMetrics, LlmCall, LlmMetrics,
    Outcome, ParseMetrics, RetrievalMetrics, Source, SpanEnd, SpanMetrics, TraceTotals,
};
pub use model::kinds::{
    ChatRole, DocumentEventStatus, DocumentEventType, OperationType, ScoreDataType, ScoreSource,
    SpanType, Status,
};
pub use model::money::micros_to_decimal;
pub use model::prices::PriceTable;
pub use model::sanitize::{JSON_TOO_DEEP, TextLimits};
pub use model::score::{Score, ScoreValue};
pub use model::stats::Stats;
pub use model::traceparent::{TraceParent, TraceParentError};
pub use partitions::{PartitionPolicy, PartitionStep};
pub use rust_decimal::Decimal;
pub use uuid::Uuid;

#[cfg(feature = "tcp-nodelay")]
#[doc(hidden)]
pub use writer::nodelay::tcp_nodelay_of;
