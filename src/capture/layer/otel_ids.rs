//! With the `opentelemetry` feature: when the layer asks the OpenTelemetry layer below it for a
//! span's ids (see [`crate::capture::otel`]), and when a root's start row, which waited for
//! them, is queued.

use tracing::{Dispatch, Subscriber};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::PostgresLayer;
use crate::capture::otel;
use crate::capture::span_data::SpanData;

impl PostgresLayer {
    /// The dispatch this layer is part of, while it lives.
    pub(super) fn otel_dispatch(&self) -> Option<Dispatch> {
        self.dispatch.get().and_then(|weak| weak.upgrade())
    }

    /// Remembers the dispatch this layer is part of (the first one, if several).
    pub(super) fn keep_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    /// Gives a root that waits for OpenTelemetry's ids those ids, and queues its start row,
    /// which waited for them. Takes no lock while OpenTelemetry takes its own.
    pub(super) fn resolve_otel<S>(&self, dispatch: &Dispatch, span: &SpanRef<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let waiting = span
            .extensions()
            .get::<SpanData>()
            .is_some_and(|d| d.otel_pending || d.start_unsent);
        if !waiting {
            return;
        }
        let ids = otel::ids_of(dispatch, &span.id());
        let mut ext = span.extensions_mut();
        let Some(data) = ext.get_mut::<SpanData>() else {
            return;
        };
        otel::adopt(data, ids);
        if data.start_unsent && !data.start_pending {
            data.start_unsent = false;
            if data.is_root {
                self.queue_root_start(data);
            }
        }
    }

    /// A root entered: its ids known now, its start row queued if it waited for them.
    pub(super) fn on_enter_otel<S>(&self, span: &SpanRef<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(dispatch) = self.otel_dispatch() {
            self.resolve_otel(&dispatch, span);
        }
    }
}
