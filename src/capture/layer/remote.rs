//! A root span's remote parent: the well-known `traceparent` (and `tracestate`) fields, read
//! for roots only, so ordinary spans pay nothing.
//!
//! A root that names a valid `traceparent` when it starts (or records one before its close,
//! having declared the field `Empty`) continues the remote trace: it becomes a span of that
//! trace, child of the remote span, and no `traces` row is written for it here. A refused
//! value leaves a root of a new trace, and the reason is counted; an empty one (no header
//! came) leaves a root without a word.

use std::time::SystemTime;

use super::PostgresLayer;
use crate::capture::span_data::SpanData;
use crate::model::fields::{Fields, Slot, Val};
use crate::model::traceparent::{TraceParent, valid_tracestate};

impl PostgresLayer {
    /// Reads a root's `traceparent` and `tracestate` from `fields` (its own at the start, or
    /// ones recorded later), joining the remote trace when the value is valid. `true` when the
    /// span joined.
    pub(super) fn read_remote(
        &self,
        data: &mut SpanData,
        fields: &mut Fields,
        at: SystemTime,
    ) -> bool {
        let tracestate = fields.take(Slot::TraceState);
        let Some(value) = fields.take(Slot::TraceParent) else {
            return false;
        };
        let parsed = match &value {
            // An empty value is a request that came without the header (`traceparent =
            // header.unwrap_or_default()`): an ordinary root, nothing refused.
            Val::S(s) if s.is_empty() => return false,
            Val::S(s) => TraceParent::parse(s),
            // A number or a boolean is no header value: its text is refused the same way.
            other => TraceParent::parse(&other.to_text()),
        };
        match parsed {
            Ok(tp) => {
                data.join_remote(tp, tracestate.as_ref().and_then(Val::as_str), at);
                true
            }
            Err(e) => {
                self.provider.handle.queue.reject(e.rejection());
                false
            }
        }
    }
}

impl PostgresLayer {
    /// Reads fields recorded late into a root waiting for its remote parent, or into a span
    /// that joined one already (a `tracestate` given after the `traceparent`).
    pub(super) fn read_late_remote(&self, data: &mut SpanData, later: &mut Fields) {
        if data.start_pending {
            self.read_remote(data, later, SystemTime::now());
        } else if data.joined_top
            && let Some(ts) = later.take(Slot::TraceState)
            && let Some(ts) = ts.as_str().and_then(valid_tracestate)
        {
            let _ = data.state.tracestate.set(ts.to_owned());
        }
    }
}
