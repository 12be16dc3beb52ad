//! The layer's `tracing` callbacks: a span's start (its record made, its ids inherited), its
//! late fields, the events inside it, its close.

use std::any::TypeId;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::Utc;
use serde_json::{Map, Value};
use tracing::span::{Attributes, Id, Record as SpanValues};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::PostgresLayer;
use super::events::{EventKind, event_kind};
use crate::capture::span_data::{SpanData, WithContext};
use crate::model::fields::{Collector, Fields, Slot};
use crate::model::ids::{span_in, v7_at};
use crate::model::record::{CapturedSpan, Record, SpanHead};
use crate::queue::on_writer_thread;

impl<S> tracing_subscriber::Layer<S> for PostgresLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        self.with_context = Some(WithContext::of::<S>());
    }

    #[cfg(feature = "opentelemetry")]
    fn on_register_dispatch(&self, dispatch: &tracing::Dispatch) {
        self.keep_dispatch(dispatch);
    }

    #[cfg(feature = "opentelemetry")]
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if on_writer_thread() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            self.on_enter_otel(&span);
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if on_writer_thread() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        // OpenTelemetry's ids, when its layer is below this one: a root waiting for them gets
        // them before its child inherits them.
        #[cfg(feature = "opentelemetry")]
        let otel = self.otel_dispatch();
        #[cfg(feature = "opentelemetry")]
        if let (Some(dispatch), Some(parent)) = (&otel, span.parent()) {
            self.resolve_otel(dispatch, &parent);
        }
        // The parent's ids, read and released before this span's extensions are locked (and
        // before the fields are recorded: formatting a user's value takes no lock of ours).
        let inherited = span.parent().and_then(|parent| {
            let ext = parent.extensions();
            ext.get::<SpanData>().map(|p| {
                (
                    p.head().trace_id,
                    Arc::clone(&p.state),
                    (!p.is_root).then_some(p.head().id),
                    p.user_id,
                    p.session_id.clone(),
                    p.kb_id,
                )
            })
        });
        let is_root = inherited.is_none();
        // One clock reading for the span's start and its id.
        let now = SystemTime::now();
        let (trace_id, state, parent, user_id, session_id, kb_id) =
            inherited.unwrap_or_else(|| (v7_at(now), Arc::default(), None, None, None, None));
        let meta = attrs.metadata();
        // The record the span becomes, made now: its fields are recorded into it in place.
        // Allocated first and written in place: `Box::new` of the value builds it on the stack
        // and copies it into the allocation (about 300 bytes).
        let mut captured = Box::write(
            Box::new_uninit(),
            CapturedSpan {
                head: SpanHead {
                    name: meta.name(),
                    id: if is_root {
                        trace_id
                    } else {
                        span_in(trace_id, now)
                    },
                    trace_id,
                    parent,
                    started_at: now,
                    // Set at the close.
                    ended_at: now,
                    panicking: false,
                },
                fields: Fields::default(),
                rare: None,
            },
        );
        #[cfg(feature = "opentelemetry")]
        if !is_root
            && let Some(dispatch) = &otel
            && let Some((trace, span_id)) = crate::capture::otel::ids_of(dispatch, id)
            && trace == trace_id
        {
            captured.head.id = crate::capture::otel::span_uuid(trace, span_id);
        }
        let fields = &mut captured.fields;
        attrs.record(&mut Collector(fields));
        // Fields declared without a value (`field::Empty`) are recorded later: room for them now.
        let late = meta.fields().len().saturating_sub(fields.len());
        if late > 0 {
            fields.reserve_known(late);
        }
        let mut data = SpanData {
            captured,
            is_root,
            state,
            user_id,
            session_id,
            kb_id,
            usage_below: false,
            joined_top: false,
            start_pending: false,
            #[cfg(feature = "opentelemetry")]
            otel_pending: false,
            start_unsent: false,
        };
        data.apply_ids(None);
        #[cfg(feature = "opentelemetry")]
        if is_root && otel.is_some() {
            // Its ids, and so its start row, wait for its first entry or child.
            data.otel_pending = true;
            data.start_unsent = true;
        }
        if is_root {
            // A remote parent, for roots only: a `traceparent` given now, or one declared
            // `Empty` (a late field) to be recorded before the close.
            if data.captured.fields.has(Slot::TraceParent) {
                let mut fields = std::mem::take(&mut data.captured.fields);
                self.read_remote(&mut data, &mut fields, now);
                data.captured.fields = fields;
            } else if late > 0 && meta.fields().field("traceparent").is_some() {
                data.start_pending = true;
            }
        }
        if data.is_root {
            if data.start_pending || data.start_unsent {
                // Written whole at the close, or never if the span joins a remote trace (or,
                // waiting for OpenTelemetry's ids, when it is first entered).
            } else {
                self.queue_root_start(&data);
            }
        } else if self.map_config().span_starts {
            let row = self.span_start(&data);
            self.push(Record::Span(Box::new(row)));
        }
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, ctx: Context<'_, S>) {
        if on_writer_thread() {
            return;
        }
        let mut later = Fields::default();
        values.record(&mut Collector(&mut later));
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(data) = ext.get_mut::<SpanData>() {
                if data.start_pending || data.joined_top {
                    self.read_late_remote(data, &mut later);
                }
                data.apply_ids(Some(&later));
                data.captured.fields.merge(later);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if on_writer_thread() {
            return;
        }
        let kind = event_kind(event, self.config.attach_events);
        if kind == EventKind::Ignore {
            return;
        }
        let span = ctx.event_span(event);
        if span.is_none() && matches!(kind, EventKind::Fill | EventKind::Error | EventKind::Attach)
        {
            // Outside any span there is nothing to attach to: left out.
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut Collector(&mut fields));
        match kind {
            EventKind::Score => {
                #[cfg(feature = "opentelemetry")]
                if let (Some(dispatch), Some(span)) = (self.otel_dispatch(), &span) {
                    self.resolve_otel(&dispatch, span);
                }
                let ext = span.as_ref().map(|s| s.extensions());
                self.on_score_event(&fields, ext.as_ref().and_then(|e| e.get::<SpanData>()));
            }
            EventKind::Chat | EventKind::Document => {
                #[cfg(feature = "opentelemetry")]
                if let (Some(dispatch), Some(span)) = (self.otel_dispatch(), &span) {
                    self.resolve_otel(&dispatch, span);
                }
                let ext = span.as_ref().map(|s| s.extensions());
                let data = ext.as_ref().and_then(|e| e.get::<SpanData>());
                if kind == EventKind::Chat {
                    self.on_chat_event(fields, data);
                } else {
                    self.on_document_event(fields, data);
                }
            }
            EventKind::Fill => {
                let Some(span) = span else { return };
                // The event's own message is not one of the call's fields.
                let _ = fields.take(Slot::Message);
                let mut ext = span.extensions_mut();
                if let Some(data) = ext.get_mut::<SpanData>() {
                    data.apply_ids(Some(&fields));
                    data.captured.fields.merge(fields);
                }
            }
            EventKind::Error => {
                let Some(span) = span else { return };
                let ty = fields
                    .text(Slot::ErrorType)
                    .unwrap_or_else(|| "error".to_owned());
                let msg = fields
                    .text(Slot::ErrorMessage)
                    .or_else(|| fields.text(Slot::Error))
                    .or_else(|| fields.text(Slot::Message));
                let mut ext = span.extensions_mut();
                if let Some(data) = ext.get_mut::<SpanData>() {
                    data.rare().error = Some((ty, msg));
                }
            }
            EventKind::Attach => {
                let Some(span) = span else { return };
                let meta = event.metadata();
                let max = self.config.max_events_per_span;
                let mut ext = span.extensions_mut();
                let Some(data) = ext.get_mut::<SpanData>() else {
                    return;
                };
                let rare = data.rare();
                if rare.events.len() >= max {
                    rare.events_dropped = rare.events_dropped.saturating_add(1);
                    return;
                }
                let mut obj = Map::new();
                obj.insert("level".to_owned(), Value::String(meta.level().to_string()));
                obj.insert("target".to_owned(), Value::String(meta.target().to_owned()));
                obj.insert("at".to_owned(), Value::String(Utc::now().to_rfc3339()));
                if let Some(m) = fields.take(Slot::Message) {
                    obj.insert(
                        "message".to_owned(),
                        m.into_clean_json(self.limits().content),
                    );
                }
                obj.extend(fields.take_extra_json(self.limits()));
                rare.events.push(Value::Object(obj));
            }
            EventKind::Ignore => {}
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if on_writer_thread() {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        // Taken out of the registry's extensions: the record inside is queued as it is.
        let Some(data) = span.extensions_mut().remove::<SpanData>() else {
            return;
        };
        // Roll-up rule: usage counts once, at the deepest span that reports it. A span with
        // usage (or with usage below it) marks its parent, whose own usage then does not count.
        let own_usage = data.fields().has_usage();
        let usage_below = data.usage_below;
        let counts = own_usage && !usage_below;
        if data.is_root {
            self.close_root(data, counts);
        } else {
            self.close_span(data, counts);
        }
        // Only then is the parent looked up (most spans report no usage), and with this span's
        // extensions released.
        if (own_usage || usage_below)
            && let Some(parent) = span.parent()
        {
            let mut ext = parent.extensions_mut();
            if let Some(p) = ext.get_mut::<SpanData>() {
                p.usage_below = true;
            }
        }
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<WithContext>() {
            self.with_context
                .as_ref()
                .map(|w| w as *const WithContext as *const ())
        } else {
            None
        }
    }
}
