//! The application-thread side: the `tracing` layer's callbacks, the explicit provider, the
//! [`TraceContext`] they share, and the handle through which both queue records. Nothing here
//! waits on the database or knows the writer: records leave through [`queue`](crate::queue).

pub(crate) mod context;
mod handle;
pub(crate) mod layer;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel;
pub(crate) mod provider;
mod span_data;
mod span_ext;
mod trace_state;

pub use context::TraceContext;
pub(crate) use handle::Handle;
pub(crate) use layer::LayerConfig;
pub use layer::PostgresLayer;
#[cfg(feature = "opentelemetry")]
pub use otel::OtelIds;
pub use provider::{ObservabilityProvider, PostgresProvider};
pub use span_ext::SpanExt;
