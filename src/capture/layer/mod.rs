//! `PostgresLayer`: the `tracing` layer that turns spans and events into rows.
//!
//! Its callbacks ([`callbacks`]) run on the application's threads, so they only capture,
//! classify and queue: field values are formatted before any extensions lock is taken, no
//! callback waits or panics, and nothing is done at all on the writer's own threads. A closed
//! span inside a trace is queued as captured ([`CapturedSpan`]) and mapped to its row on the
//! writer's thread.

mod callbacks;
mod events;
mod explicit;
#[cfg(feature = "opentelemetry")]
mod otel_ids;
mod remote;

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::level_filters::LevelFilter;

use super::provider::PostgresProvider;
use super::span_data::{SpanData, WithContext};
use crate::map::{self, Scope};
use crate::model::fields::Fields;
use crate::model::ids::v7_now;
use crate::model::kinds::Status;
use crate::model::record::{CapturedSpan, Record};
use crate::model::rows::SpanRow;
use crate::model::sanitize::{TextLimits, clean_cow, clean_static};
use crate::model::stats::Stats;

/// Options of the layer's capture, set on the [`Builder`](crate::Builder).
#[derive(Debug, Clone)]
pub(crate) struct LayerConfig {
    /// Events at this level or more severe are attached to their span's metadata.
    pub attach_events: LevelFilter,
    /// Most events attached to one span; more are counted in `metadata.events_dropped`.
    pub max_events_per_span: usize,
}

impl Default for LayerConfig {
    fn default() -> Self {
        Self {
            attach_events: LevelFilter::WARN,
            max_events_per_span: 16,
        }
    }
}

/// A `tracing` layer that writes spans and well-known events to PostgreSQL, and the explicit
/// provider at the same time (it implements [`ObservabilityProvider`]), so instrumented code and
/// explicit calls land in the same traces.
///
/// Made by [`Builder::build_layer`](crate::Builder::build_layer). See the crate documentation for
/// the mapping of spans, fields and events to rows.
///
/// [`ObservabilityProvider`]: crate::ObservabilityProvider
#[derive(Debug, Clone)]
pub struct PostgresLayer {
    pub(crate) provider: PostgresProvider,
    pub(crate) config: Arc<LayerConfig>,
    with_context: Option<WithContext>,
    /// The dispatch this layer is part of, to ask the OpenTelemetry layer below for its ids.
    #[cfg(feature = "opentelemetry")]
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

/// The scope of an event: its span's, or a new trace of its own outside any span.
fn scope_of(span: Option<&SpanData>) -> Scope<'_> {
    span.map_or_else(
        || Scope {
            trace_id: v7_now(),
            span_id: None,
            user_id: None,
            session_id: None,
            kb_id: None,
        },
        SpanData::scope,
    )
}

impl PostgresLayer {
    pub(crate) fn new(provider: PostgresProvider, config: Arc<LayerConfig>) -> Self {
        Self {
            provider,
            config,
            with_context: None,
            #[cfg(feature = "opentelemetry")]
            dispatch: std::sync::OnceLock::new(),
        }
    }

    /// The provider this layer feeds (the same queue and writer).
    pub fn provider(&self) -> &PostgresProvider {
        &self.provider
    }

    /// The writer's counters now: the same as the [`WriterGuard`](crate::WriterGuard)'s
    /// [`stats`](crate::WriterGuard::stats), which this delegates to.
    pub fn stats(&self) -> Stats {
        self.provider.stats()
    }

    fn limits(&self) -> &TextLimits {
        self.provider.handle.limits()
    }

    fn map_config(&self) -> &map::MapConfig {
        &self.provider.handle.map
    }

    fn push(&self, record: Record) {
        self.provider.handle.push(record);
    }

    /// Queues a root's `traces` start row (`in_progress`).
    fn queue_root_start(&self, data: &SpanData) {
        let row = map::root_start(self.limits(), &data.captured, &data.scope());
        self.push(Record::Trace(Box::new(row)));
    }

    /// The start row of a span inside a trace, when every span's start is written.
    fn span_start(&self, data: &SpanData) -> SpanRow {
        let head = data.head();
        let l = self.limits();
        SpanRow {
            id: head.id,
            trace_id: head.trace_id,
            parent_span_id: head.parent,
            name: clean_static(head.name, l.label),
            span_type: clean_cow(map::span_type(data.fields()).into_text(), l.label),
            started_at: head.started_at.into(),
            status: Some(Status::InProgress),
            metadata: Value::Object(Map::new()),
            start_sent: true,
            ..SpanRow::default()
        }
    }

    /// Adds a span's usage to its trace's totals (when it `counts`, by the roll-up rule).
    fn add_usage(&self, data: &SpanData, counts: bool) {
        if counts {
            let (prompt, completion, cost, _) = map::usage(self.map_config(), data.fields());
            data.state.totals.add(prompt, completion, cost);
        }
    }

    /// Closes a span inside a trace: only what must happen on the caller's thread happens
    /// here (the trace's usage totals, whether the thread panics, the clock); mapping fields to
    /// columns, sanitising and writing the metadata happen on the writer's thread.
    fn close_span(&self, data: SpanData, counts: bool) {
        self.add_usage(&data, counts);
        if data.joined_top {
            // This process's share of the remote trace: its origin writes the trace's row.
            let head = data.head();
            let part = map::part(
                head.trace_id,
                head.id,
                head.started_at.into(),
                data.state.totals.snapshot(),
            );
            self.push(Record::Part(Box::new(part)));
        }
        let mut captured: Box<CapturedSpan> = data.captured;
        // The clock as read; converted to a date on the writer's thread.
        captured.head.ended_at = SystemTime::now();
        captured.head.panicking = std::thread::panicking();
        self.push(Record::Closed(captured));
    }

    /// Closes a root span: its trace's finished row, with the trace's totals.
    fn close_root(&self, data: SpanData, counts: bool) {
        self.add_usage(&data, counts);
        let mut row = map::root_end(
            self.map_config(),
            &data.captured,
            &data.scope(),
            data.state.totals.snapshot(),
            std::thread::panicking(),
        );
        // A root that waited for a `traceparent` which never came sent no start row.
        row.start_sent &= !(data.start_pending || data.start_unsent);
        if data.state.is_distributed() {
            // Its share first: the row's recount (in this batch or a later one) includes it.
            let part = map::origin_part(&mut row);
            self.push(Record::Part(Box::new(part)));
        }
        self.push(Record::Trace(Box::new(row)));
    }

    fn on_chat_event(&self, fields: Fields, span: Option<&SpanData>) {
        match map::chat_event(self.limits(), &fields, &scope_of(span)) {
            Ok(row) => self.push(Record::Chat(Box::new(row))),
            Err(reason) => self.provider.handle.queue.reject(reason),
        }
    }

    /// A score event: a row of the event's span, or refused outside any span (a score of
    /// nothing).
    fn on_score_event(&self, fields: &Fields, span: Option<&SpanData>) {
        let Some(span) = span else {
            self.provider
                .handle
                .queue
                .reject("score event: outside any span, so of no trace");
            return;
        };
        match map::score_event(self.limits(), fields, &span.scope()) {
            Ok(row) => self.push(Record::Score(Box::new(row))),
            Err(reason) => self.provider.handle.queue.reject(reason),
        }
    }

    fn on_document_event(&self, fields: Fields, span: Option<&SpanData>) {
        match map::document_event(self.limits(), fields, &scope_of(span)) {
            Ok(row) => self.push(Record::Document(Box::new(row))),
            Err(reason) => self.provider.handle.queue.reject(reason),
        }
    }
}

#[cfg(test)]
mod tests;
