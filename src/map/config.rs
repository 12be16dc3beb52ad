//! What every mapping is given: the one [`MapConfig`], and the [`Scope`] a row made inside a
//! span belongs to.

use uuid::Uuid;

use crate::model::prices::PriceTable;
use crate::model::sanitize::TextLimits;

/// How captured records become rows, set once on the [`Builder`](crate::Builder) and shared
/// by the layer, the provider and the writer.
#[derive(Debug, Clone)]
pub(crate) struct MapConfig {
    /// The text limits every text is cut to.
    pub limits: TextLimits,
    /// Prices for spans with tokens and no cost.
    pub prices: PriceTable,
    /// Whether every span (not only root spans) is written as `in_progress` when it starts:
    /// a closed span's row then meets its start row, so it cannot be a plain `COPY`.
    pub span_starts: bool,
    /// Whether the OpenTelemetry bridge's transport fields (`otel.kind`, `server.address`,
    /// `server.port`) are kept in `metadata`; by default they are left out.
    pub otel_transport_fields: bool,
}

impl Default for MapConfig {
    /// The default text limits, the bundled prices, no start rows for child spans.
    fn default() -> Self {
        Self {
            limits: TextLimits::default(),
            prices: PriceTable::bundled(),
            span_starts: false,
            otel_transport_fields: false,
        }
    }
}

/// The trace, span and ids a row made inside a span belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub trace_id: Uuid,
    /// The span; `None` directly under the root.
    pub span_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub session_id: Option<&'a str>,
    pub kb_id: Option<Uuid>,
}
