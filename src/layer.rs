//! `PostgresLayer`: the `tracing` callbacks that turn spans and events into rows.
//!
//! The callbacks run on the application's threads, so they only capture, classify and queue:
//! field values are formatted before any extensions lock is taken, no callback waits or
//! panics, and nothing is done at all on the writer's own threads. A closed span inside a trace
//! is queued raw ([`QueuedSpan`]) and mapped to its row by [`finish_span`] or [`encode_raw_span`]
//! on the writer's thread.

use std::any::TypeId;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use smallvec::SmallVec;
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record as SpanValues};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use uuid::Uuid;

use crate::context::{TraceContext, TraceId, TraceState};
use crate::fields::{Collector, Fields, Slot, Val};
use crate::jsonb_text;
use crate::prices::PriceTable;
use crate::provider::PostgresProvider;
use crate::record::{
    ChatMessageRow, DocumentEventRow, DocumentEventStatus, Record, SpanRow, SpanType, Status,
    TraceRow, cost_to_micros, money_in_range,
};
use crate::sanitize::{
    TextLimits, clean_borrowed, clean_cow, clean_json, clean_owned, clean_static, clean_text,
};
use crate::values::{back_from, count, count32, finite, millis_between, millis_between_times};
use crate::writer::batch::EncodedSpans;
use crate::writer::on_writer_thread;

/// Options of the layer, set on the [`Builder`](crate::Builder).
#[derive(Debug, Clone)]
pub(crate) struct LayerConfig {
    /// Prices for spans with tokens and no cost.
    pub prices: PriceTable,
    /// Events at this level or more severe are attached to their span's metadata.
    pub attach_events: LevelFilter,
    /// Most events attached to one span; more are counted in `metadata.events_dropped`.
    pub max_events_per_span: usize,
    /// Whether every span (not only root spans) is written as `in_progress` when it starts.
    pub span_starts: bool,
}

impl Default for LayerConfig {
    fn default() -> Self {
        Self {
            prices: PriceTable::default(),
            attach_events: LevelFilter::WARN,
            max_events_per_span: 16,
            span_starts: false,
        }
    }
}

/// Reaches a span's [`SpanData`] through a `Dispatch`, whatever the subscriber's type; found by
/// `downcast_ref` on the dispatch. This is how [`TraceContext::current`] and explicit provider
/// calls find the instrumented span they run in.
#[derive(Clone, Copy)]
pub(crate) struct WithContext(pub VisitSpanData);

/// Calls the closure with the span's data, if the span is recorded by a `PostgresLayer`.
pub(crate) type VisitSpanData = fn(&Dispatch, &Id, &mut dyn FnMut(&mut SpanData));

impl std::fmt::Debug for WithContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithContext")
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
}

/// What the layer keeps about an open span, in the registry's extensions.
#[derive(Debug)]
pub(crate) struct SpanData {
    /// The record the span becomes at its close, made at its start: its ids and start time,
    /// and its fields, recorded into it in place. At the close it is queued as it is, so the
    /// fields are never copied from the span to the queue (and this, which the registry
    /// stores, stays small). A root's is never queued: the root becomes the trace's row.
    queued: Box<QueuedSpan>,
    is_root: bool,
    state: Arc<TraceState>,
    user_id: Option<Uuid>,
    /// Shared with the spans below: inherited by every span, so not copied for each.
    session_id: Option<Arc<str>>,
    kb_id: Option<Uuid>,
    /// A span below this one (or an explicit call made in it) reported token usage: this
    /// span's own usage is then not added to the trace (see the roll-up rule).
    pub(crate) usage_below: bool,
}

impl SpanData {
    /// The span's error and events, made on first use.
    fn rare(&mut self) -> &mut Rare {
        self.queued.rare.get_or_insert_with(Box::default)
    }

    /// The span's fields as recorded so far.
    fn fields(&self) -> &Fields {
        &self.queued.fields
    }

    /// The span's ids and start.
    fn head(&self) -> &SpanHead {
        &self.queued.head
    }

    /// The context explicit calls made inside this span use.
    fn context(&self) -> TraceContext {
        TraceContext {
            trace_id: TraceId(self.head().trace_id),
            span_id: (!self.is_root).then_some(crate::SpanId(self.head().id)),
            user_id: self.user_id,
            session_id: self.session_id.as_deref().map(str::to_owned),
            kb_id: self.kb_id,
            state: Arc::clone(&self.state),
            origin: None,
        }
    }

    /// Takes the user, session and kb ids the span names, where given: in its own fields, or
    /// in `later` ones (recorded with `Span::record`).
    fn apply_ids(&mut self, later: Option<&Fields>) {
        let SpanData {
            queued,
            user_id,
            session_id,
            kb_id,
            ..
        } = self;
        let fields = later.unwrap_or(&queued.fields);
        if !fields.names_ids() {
            return;
        }
        let [user, session, kb] = fields.get_many([Slot::UserId, Slot::SessionId, Slot::KbId]);
        if let Some(v) = user {
            *user_id = parse_uuid(v).or(*user_id);
        }
        if let Some(v) = session {
            *session_id = Some(v.to_text().into());
        }
        if let Some(v) = kb {
            *kb_id = parse_uuid(v).or(*kb_id);
        }
    }
}

fn parse_uuid(v: &Val) -> Option<Uuid> {
    v.as_str().and_then(|s| Uuid::try_parse(s.trim()).ok())
}

fn get_context<S>(dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanData))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return;
    };
    let Some(span) = subscriber.span(id) else {
        return;
    };
    let mut ext = span.extensions_mut();
    if let Some(data) = ext.get_mut::<SpanData>() {
        f(data);
    }
}

impl TraceContext {
    /// The context of the current instrumented span, when a [`PostgresLayer`] records it: its
    /// trace, the span itself as the parent of new spans, and the user, session and kb ids it
    /// carries or inherits. Explicit provider calls made with it join the instrumented trace.
    ///
    /// `None` outside any span, or when no `PostgresLayer` is installed.
    pub fn current() -> Option<TraceContext> {
        tracing::Span::current()
            .with_subscriber(|(id, dispatch)| {
                let hook = *dispatch.downcast_ref::<WithContext>()?;
                let mut out = None;
                (hook.0)(dispatch, id, &mut |data| {
                    let mut ctx = data.context();
                    ctx.origin = Some(crate::context::Origin {
                        id: id.clone(),
                        dispatch: dispatch.clone(),
                        hook,
                    });
                    out = Some(ctx);
                });
                out
            })
            .flatten()
    }
}

impl PostgresLayer {
    pub(crate) fn new(provider: PostgresProvider, config: Arc<LayerConfig>) -> Self {
        Self {
            provider,
            config,
            with_context: None,
        }
    }

    /// The provider this layer feeds (the same queue and writer).
    pub fn provider(&self) -> &PostgresProvider {
        &self.provider
    }

    /// The writer's counters now.
    pub fn stats(&self) -> crate::Stats {
        self.provider.stats()
    }

    fn limits(&self) -> &TextLimits {
        &self.provider.handle.limits
    }

    fn push(&self, record: Record) {
        self.provider.handle.push(record);
    }

    /// The trace row of a root span (a start when `ended_at` is `None`).
    fn trace_row(
        &self,
        name: &'static str,
        data: &SpanData,
        ended_at: Option<DateTime<Utc>>,
    ) -> TraceRow {
        let l = self.limits();
        let operation_type = match data.fields().text(Slot::OperationType) {
            Some(s) => Cow::Owned(clean_text(&s.to_ascii_lowercase(), l.label)),
            None => clean_static(name, l.label),
        };
        let started_at = DateTime::<Utc>::from(data.head().started_at);
        TraceRow {
            id: data.head().trace_id,
            name: clean_static(name, l.label),
            operation_type,
            user_id: data.user_id,
            session_id: data.session_id.as_deref().map(|s| clean_text(s, l.label)),
            kb_id: data.kb_id,
            started_at,
            ended_at,
            duration_ms: ended_at.map(|e| millis_between(started_at, e)),
            metadata: Value::Object(Map::new()),
            // A root span's start row is always queued.
            start_sent: ended_at.is_some(),
            ..TraceRow::default()
        }
    }

    /// The span row of a non-root span (a start when `ended_at` is `None`).
    fn span_row(&self, name: &'static str, data: &SpanData) -> SpanRow {
        let head = data.head();
        SpanRow {
            id: head.id,
            trace_id: head.trace_id,
            parent_span_id: head.parent,
            name: clean_static(name, self.limits().label),
            span_type: clean_cow(span_type(data.fields()).into_text(), self.limits().label),
            started_at: head.started_at.into(),
            status: Some(Status::InProgress),
            metadata: Value::Object(Map::new()),
            start_sent: self.config.span_starts,
            ..SpanRow::default()
        }
    }

    /// Tokens and cost (micro-dollars, with its source) the span reports.
    fn usage(&self, f: &Fields) -> (Option<i64>, Option<i64>, Option<i64>, Option<&'static str>) {
        usage(&self.config, f)
    }

    /// Closes a span inside a trace: only what must happen on the caller's thread happens
    /// here (the trace's usage totals, whether the thread panics, the clock); mapping fields to
    /// columns, sanitising and building the metadata JSON is [`finish_span`]'s, on the writer's
    /// thread (or here, when privacy settings must see the finished row before it is queued).
    fn close_span(&self, data: SpanData, counts: bool) {
        let SpanData {
            mut queued, state, ..
        } = data;
        // The clock as read; converted to a date on the writer's thread.
        queued.head.ended_at = std::time::SystemTime::now();
        queued.head.panicking = std::thread::panicking();
        if counts {
            let (prompt, completion, cost, _) = self.usage(&queued.fields);
            state.totals.add(prompt, completion, cost);
        }
        if self.provider.handle.privacy.is_active() {
            // The privacy settings see the finished row here, before it is queued.
            let row = finish_span(&self.config, self.limits(), queued.into_raw());
            self.push(Record::Span(Box::new(row)));
            return;
        }
        self.push(Record::Raw(queued));
    }

    fn close_root(&self, name: &'static str, mut data: SpanData, counts: bool) {
        let now = Utc::now();
        let l = *self.limits();
        let (prompt, completion, cost, _) = self.usage(data.fields());
        if counts {
            data.state.totals.add(prompt, completion, cost);
        }
        let mut row = self.trace_row(name, &data, Some(now));
        let (error, events, events_dropped) = Rare::split(data.queued.rare.take());
        let (status, error_type, error_message) =
            outcome(&error, data.fields(), std::thread::panicking());
        row.status = status;
        row.error_type = error_type.map(|s| clean_text(&s, l.label));
        row.error_message = error_message.map(|s| clean_owned(s, l.error_message));
        let (p, c, cost) = data.state.totals.snapshot();
        row.prompt_tokens = Some(p);
        row.completion_tokens = Some(c);
        row.total_tokens = Some(p.saturating_add(c));
        // A sum of valid costs can still exceed numeric(10,6): stored NULL then.
        row.total_cost_micros = cost.and_then(money_in_range);
        let mut metadata = metadata(&l, &mut data.queued.fields, events, events_dropped);
        // The root's own typed fields have no column in `traces`: keep them in metadata.
        if let (Value::Object(m), Some(model)) = (&mut metadata, data.fields().text(Slot::Model)) {
            m.insert(
                "model".to_owned(),
                Value::String(clean_text(&model, l.label)),
            );
        }
        row.metadata = metadata;
        self.push(Record::Trace(Box::new(row)));
    }

    fn on_chat_event(&self, fields: Fields, span: Option<&SpanData>) {
        let l = *self.limits();
        let user_id = fields
            .get(Slot::UserId)
            .and_then(parse_uuid)
            .or(span.and_then(|s| s.user_id));
        let kb_id = fields
            .get(Slot::KbId)
            .and_then(parse_uuid)
            .or(span.and_then(|s| s.kb_id));
        let session_id = fields
            .text(Slot::SessionId)
            .or_else(|| span.and_then(|s| s.session_id.as_deref().map(str::to_owned)));
        let (Some(user_id), Some(kb_id), Some(session_id)) = (user_id, kb_id, session_id) else {
            self.provider
                .handle
                .queue
                .reject("chat event: no session id, user id and kb id on the event or its spans");
            return;
        };
        let json = |slot| {
            let v = match fields.get(slot) {
                None => return Value::Array(Vec::new()),
                Some(Val::S(s)) => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
                }
                Some(other) => other.clone().into_json(),
            };
            clean_json(v, &l)
        };
        let row = ChatMessageRow {
            id: crate::ids::v7_now(),
            trace_id: span.map_or_else(crate::ids::v7_now, |s| s.head().trace_id),
            span_id: span.filter(|s| !s.is_root).map(|s| s.head().id),
            session_id: clean_text(&session_id, l.label),
            user_id,
            kb_id,
            role: clean_text(
                &fields
                    .text(Slot::Role)
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                l.label,
            ),
            content: clean_owned(fields.text(Slot::Content).unwrap_or_default(), l.content),
            turn_number: count32(fields.i32(Slot::TurnNumber)),
            sources: json(Slot::Sources),
            citations: json(Slot::Citations),
            prompt_tokens: count(fields.i64(Slot::PromptTokens)),
            completion_tokens: count(fields.i64(Slot::CompletionTokens)),
            response_time_ms: fields
                .f64(Slot::ResponseTimeMs)
                .filter(|x| x.is_finite() && *x >= 0.0),
            created_at: Utc::now(),
        };
        self.push(Record::Chat(Box::new(row)));
    }

    fn on_document_event(&self, mut fields: Fields, span: Option<&SpanData>) {
        let l = *self.limits();
        let Some(document_id) = fields.get(Slot::DocumentId).and_then(parse_uuid) else {
            self.provider
                .handle
                .queue
                .reject("document event: document_id is not a UUID");
            return;
        };
        // The status column holds four values; common synonyms map onto them, and anything
        // else is stored as `completed` with the given status kept in metadata.
        let given_status = fields
            .text(Slot::Status)
            .map(|s| clean_text(s.trim(), l.label));
        let status = given_status.as_deref().map(document_status);
        let now = Utc::now();
        let duration = fields
            .f64(Slot::DurationMs)
            .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e12);
        let status_unknown = matches!(status, Some(None));
        let status = status.flatten().unwrap_or(DocumentEventStatus::Completed);
        let finished = status != DocumentEventStatus::Started;
        let started_at = if finished {
            back_from(now, duration)
        } else {
            now
        };
        let mut extra = fields.take_extra_json(&l);
        if status_unknown && let Some(s) = given_status {
            extra.insert("status".to_owned(), Value::String(s));
        }
        // A kb id that is not a UUID has no column to go to: keep it as given.
        if let Some(v) = fields.get(Slot::KbId).filter(|v| parse_uuid(v).is_none()) {
            extra.insert("kb_id".to_owned(), v.clone().into_clean_json(l.label));
        }
        if let Some(m) = fields.text(Slot::Message) {
            extra.insert(
                "message".to_owned(),
                Value::String(clean_owned(m, l.content)),
            );
        }
        let row = DocumentEventRow {
            id: crate::ids::v7_now(),
            trace_id: span.map_or_else(crate::ids::v7_now, |s| s.head().trace_id),
            span_id: span.filter(|s| !s.is_root).map(|s| s.head().id),
            document_id,
            kb_id: fields
                .get(Slot::KbId)
                .and_then(parse_uuid)
                .or(span.and_then(|s| s.kb_id)),
            event_type: clean_text(
                &fields
                    .text(Slot::EventType)
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                l.label,
            ),
            status: status.as_str().to_owned(),
            started_at,
            completed_at: finished.then_some(now),
            duration_ms: duration,
            extracted_pages: count32(fields.i32(Slot::ExtractedPages)),
            extracted_chars: count(fields.i64(Slot::ExtractedChars)),
            tables_found: count32(fields.i32(Slot::TablesFound)),
            images_found: count32(fields.i32(Slot::ImagesFound)),
            chunks_created: count32(fields.i32(Slot::ChunksCreated)),
            avg_chunk_size: count32(fields.i32(Slot::AvgChunkSize)),
            vectors_generated: count(fields.i64(Slot::VectorsGenerated)),
            embedding_model: fields
                .text(Slot::EmbeddingModel)
                .or_else(|| fields.text(Slot::Model))
                .map(|s| clean_text(&s, l.label)),
            vectors_upserted: count(fields.i64(Slot::VectorsUpserted)),
            collection_name: fields
                .text(Slot::CollectionName)
                .map(|s| clean_text(&s, l.label)),
            error_type: fields
                .text(Slot::ErrorType)
                .map(|s| clean_text(&s, l.label)),
            error_message: fields
                .text(Slot::ErrorMessage)
                .or_else(|| fields.text(Slot::Error))
                .map(|s| clean_owned(s, l.error_message)),
            retryable: fields.bool(Slot::Retryable),
            retry_count: count32(fields.i32(Slot::RetryCount)),
            metadata: Value::Object(extra),
        };
        self.push(Record::Document(Box::new(row)));
    }
}

/// A span inside a trace as it is queued at its close: one allocation holding its fields
/// (inline, see [`Fields`] for why), what few spans have (an error, attached events) boxed
/// apart. Made at the span's start and filled while it is open (see [`SpanData`]).
/// [`into_raw`](Self::into_raw) makes the [`RawSpan`] the writer maps to a row.
#[derive(Debug)]
pub(crate) struct QueuedSpan {
    head: SpanHead,
    /// The fields as captured on the span's thread.
    fields: Fields,
    /// An error or attached events; `None` for most spans.
    rare: Option<Box<Rare>>,
}

/// What a closed span is besides its fields: ids, name, clock readings.
#[derive(Debug)]
struct SpanHead {
    /// The span's name, from its callsite.
    name: &'static str,
    /// The span's row id.
    id: Uuid,
    /// The trace (root span) it belongs to.
    trace_id: Uuid,
    /// The parent span's row id; `None` directly under the root.
    parent: Option<Uuid>,
    /// The clock at the span's start, as read (converted to a date by the writer).
    started_at: SystemTime,
    /// The clock at its close, as read.
    ended_at: SystemTime,
    /// Whether the span closed while its thread panicked (known only on that thread).
    panicking: bool,
}

/// An error reported in a span: its type, and its message if any.
type SpanError = (String, Option<String>);

/// What only some spans carry, kept out of [`SpanData`] and [`QueuedSpan`] to keep them small.
#[derive(Debug, Default)]
struct Rare {
    /// The error type and message of an error event.
    error: Option<SpanError>,
    /// Events attached to the span, as JSON.
    events: Vec<Value>,
    /// Events past the per-span limit, counted only.
    events_dropped: u32,
}

impl Rare {
    /// The error, the events and the count of events left out; nothing for a span without.
    fn split(rare: Option<Box<Rare>>) -> (Option<SpanError>, Vec<Value>, u32) {
        match rare {
            Some(r) => (r.error, r.events, r.events_dropped),
            None => (None, Vec::new(), 0),
        }
    }
}

impl QueuedSpan {
    /// Approximate heap bytes, for the queue's byte budget.
    pub(crate) fn approx_bytes(&self) -> usize {
        let rare = self.rare.as_ref().map_or(0, |r| {
            let error = r
                .error
                .as_ref()
                .map_or(0, |(t, m)| t.len() + m.as_ref().map_or(0, String::len));
            std::mem::size_of::<Rare>()
                + error
                + r.events.len() * 32
                + r.events
                    .iter()
                    .map(crate::record::json_bytes)
                    .sum::<usize>()
        });
        std::mem::size_of::<QueuedSpan>() + self.fields.approx_bytes() + rare
    }

    /// The span as the writer maps it (on the writer's thread).
    pub(crate) fn into_raw(self) -> RawSpan {
        RawSpan::new(self.head, self.fields, self.rare)
    }
}

/// A closed span inside a trace, taken from its [`QueuedSpan`] on the writer's thread: its
/// fields as captured, mapped to a row by [`finish_span`] or [`encode_raw_span`].
#[derive(Debug)]
pub(crate) struct RawSpan {
    head: SpanHead,
    /// The fields as captured.
    fields: Fields,
    /// The error type and message of an error event.
    error: Option<SpanError>,
    /// Events attached to the span, as JSON.
    events: Vec<Value>,
    /// Events past the per-span limit, counted only.
    events_dropped: u32,
}

impl RawSpan {
    /// A closed span from its head, its fields and what only some spans carry.
    fn new(head: SpanHead, fields: Fields, rare: Option<Box<Rare>>) -> Self {
        let (error, events, events_dropped) = Rare::split(rare);
        Self {
            head,
            fields,
            error,
            events,
            events_dropped,
        }
    }
}

/// The span row of a closed span: fields mapped to columns, sanitised, the rest in metadata.
pub(crate) fn finish_span(config: &LayerConfig, l: &TextLimits, mut raw: RawSpan) -> SpanRow {
    let mut row = span_columns(config, l, &raw);
    row.metadata = metadata(
        l,
        &mut raw.fields,
        std::mem::take(&mut raw.events),
        raw.events_dropped,
    );
    row
}

/// Encodes a closed span's row for binary `COPY` straight from what was captured: the same
/// row as [`finish_span`], without building its metadata as a JSON value first.
pub(crate) fn encode_raw_span(
    spans: &mut EncodedSpans,
    config: &LayerConfig,
    l: &TextLimits,
    raw: RawSpan,
) {
    let row = span_columns(config, l, &raw);
    spans.push(&row, |enc| {
        enc.jsonb_with(|buf| write_metadata(buf, l, &raw.fields, &raw.events, raw.events_dropped));
    });
}

/// The row of a closed span without its metadata (`Null`).
fn span_columns(config: &LayerConfig, l: &TextLimits, raw: &RawSpan) -> SpanRow {
    let f = &raw.fields;
    let (started_at, ended_at) = (
        DateTime::<Utc>::from(raw.head.started_at),
        DateTime::<Utc>::from(raw.head.ended_at),
    );
    let (prompt, completion, cost, cost_source) = usage(config, f);
    let (status, error_type, error_message) = outcome(&raw.error, f, raw.head.panicking);
    SpanRow {
        id: raw.head.id,
        trace_id: raw.head.trace_id,
        parent_span_id: raw.head.parent,
        name: clean_static(raw.head.name, l.label),
        span_type: clean_cow(span_type(f).into_text(), l.label),
        started_at,
        ended_at: Some(ended_at),
        duration_ms: Some(millis_between_times(raw.head.started_at, raw.head.ended_at)),
        status: Some(status),
        error_type: error_type.map(|s| clean_text(&s, l.label)),
        error_message: error_message.map(|s| clean_owned(s, l.error_message)),
        model: f.text(Slot::Model).map(|s| clean_text(&s, l.label)),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: cost,
        cost_source,
        temperature: finite(f.f64(Slot::Temperature)),
        embedding_model: f
            .text(Slot::EmbeddingModel)
            .map(|s| clean_text(&s, l.label)),
        vector_count: count(f.i64(Slot::VectorCount)),
        vector_dimensions: count32(f.i32(Slot::VectorDimensions)),
        query_text: f.text(Slot::QueryText).map(|s| clean_owned(s, l.content)),
        result_count: count32(f.i32(Slot::ResultCount)),
        top_score: finite(f.f64(Slot::TopScore)),
        file_type: f.text(Slot::FileType).map(|s| clean_text(&s, l.label)),
        file_size_bytes: count(f.i64(Slot::FileSizeBytes)),
        page_count: count32(f.i32(Slot::PageCount)),
        chunk_count: count32(f.i32(Slot::ChunkCount)),
        chunk_strategy: f.text(Slot::ChunkStrategy).map(|s| clean_text(&s, l.label)),
        vectors_upserted: count(f.i64(Slot::VectorsUpserted)),
        collection_name: f
            .text(Slot::CollectionName)
            .map(|s| clean_text(&s, l.label)),
        input_preview: f
            .text(Slot::InputPreview)
            .map(|s| clean_owned(s, l.preview)),
        output_preview: f
            .text(Slot::OutputPreview)
            .map(|s| clean_owned(s, l.preview)),
        metadata: Value::Null,
        start_sent: config.span_starts,
    }
}

/// Tokens and cost (micro-dollars, with its source) a span's fields report.
fn usage(
    config: &LayerConfig,
    f: &Fields,
) -> (Option<i64>, Option<i64>, Option<i64>, Option<&'static str>) {
    let prompt = count(f.i64(Slot::PromptTokens));
    let completion = count(f.i64(Slot::CompletionTokens));
    let given = f.get(Slot::CostUsd).and_then(|v| match v {
        Val::S(s) => s.trim().parse::<Decimal>().ok(),
        other => other.as_f64().and_then(|x| Decimal::try_from(x).ok()),
    });
    if let Some(micros) = given.and_then(cost_to_micros) {
        return (prompt, completion, Some(micros), Some("given"));
    }
    // No tokens: nothing to price (and no model name to copy out).
    if prompt.is_none() && completion.is_none() {
        return (prompt, completion, None, None);
    }
    // The model borrowed where it is text (this runs on the caller's thread for the totals).
    let computed = f.get(Slot::Model).and_then(|v| {
        let model = v
            .as_str()
            .map_or_else(|| Cow::Owned(v.to_text()), Cow::Borrowed);
        config
            .prices
            .cost(&model, prompt.unwrap_or(0), completion.unwrap_or(0))
    });
    match computed.and_then(cost_to_micros) {
        Some(micros) => (prompt, completion, Some(micros), Some("computed")),
        None => (prompt, completion, None, None),
    }
}

/// A span's metadata: fields without a column, attached events, ids that were not UUIDs.
fn metadata(l: &TextLimits, fields: &mut Fields, events: Vec<Value>, events_dropped: u32) -> Value {
    let mut m = fields.take_extra_json(l);
    for slot in [Slot::UserId, Slot::KbId] {
        // An id that is not a UUID has no column to go to: keep it as given.
        if let Some(v) = fields.get(slot).filter(|v| parse_uuid(v).is_none()) {
            let key = if slot == Slot::UserId {
                "user_id"
            } else {
                "kb_id"
            };
            m.insert(key.to_owned(), v.clone().into_clean_json(l.label));
        }
    }
    if !events.is_empty() {
        m.insert("events".to_owned(), Value::Array(events));
    }
    if events_dropped > 0 {
        m.insert("events_dropped".to_owned(), Value::from(events_dropped));
    }
    // Keys, strings and depth are clean already: events were cleaned when attached.
    Value::Object(m)
}

/// Writes the JSON text of a span's metadata: the same object as [`metadata`] builds (keys
/// written later win, in `jsonb` as in a map), without building it. The keys go in the order
/// `jsonb` stores them, each once, so the server's sort of them is a single check.
fn write_metadata(
    buf: &mut Vec<u8>,
    l: &TextLimits,
    fields: &Fields,
    events: &[Value],
    events_dropped: u32,
) {
    /// A key: a field's name, or its name cut to a label's length (an index into `cut`).
    enum Key {
        Name(&'static str),
        Cut(usize),
    }
    /// What goes under one key.
    enum Item<'a> {
        /// A field's value, and the most characters it keeps.
        Field(&'a Val, usize),
        Events,
        EventsDropped,
    }
    fn val(buf: &mut Vec<u8>, v: &Val, max_chars: usize) {
        // Numbers are written as `Val::into_json` would have them, without building a value or
        // a string first. Writing into a Vec cannot fail.
        match v {
            Val::S(s) => jsonb_text::write_str(buf, &clean_borrowed(s, max_chars)),
            Val::I(x) => {
                let _ = serde_json::to_writer(&mut *buf, x);
            }
            Val::U(x) => {
                let _ = serde_json::to_writer(&mut *buf, x);
            }
            Val::B(x) => buf.extend_from_slice(if *x { b"true" } else { b"false" }),
            Val::F(x) if x.is_finite() => {
                let _ = serde_json::to_writer(&mut *buf, x);
            }
            // JSON has no NaN or infinity: kept as text.
            Val::F(x) => jsonb_text::write_str(buf, &x.to_string()),
        }
    }
    // A field name longer than a label is cut (rare): the cut names, which keys point into.
    let mut cut: Vec<String> = Vec::new();
    let mut items: SmallVec<[(Key, Item); 8]> = SmallVec::new();
    for (name, v) in fields.extras() {
        let key = match clean_static(name, l.label) {
            Cow::Borrowed(name) => Key::Name(name),
            Cow::Owned(c) => {
                cut.push(c);
                Key::Cut(cut.len() - 1)
            }
        };
        items.push((key, Item::Field(v, l.content)));
    }
    for (slot, name) in [(Slot::UserId, "user_id"), (Slot::KbId, "kb_id")] {
        if let Some(v) = fields.get(slot).filter(|v| parse_uuid(v).is_none()) {
            items.push((Key::Name(name), Item::Field(v, l.label)));
        }
    }
    if !events.is_empty() {
        items.push((Key::Name("events"), Item::Events));
    }
    if events_dropped > 0 {
        items.push((Key::Name("events_dropped"), Item::EventsDropped));
    }
    let key = |(k, _): &(Key, Item)| match *k {
        Key::Name(name) => name,
        Key::Cut(i) => cut.get(i).map_or("", String::as_str),
    };
    jsonb_text::sort_keys(&mut items, key);
    buf.push(b'{');
    for (i, entry) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        jsonb_text::write_str(buf, key(entry));
        buf.push(b':');
        match &entry.1 {
            Item::Field(v, max_chars) => val(buf, v, *max_chars),
            Item::Events => {
                let _ = serde_json::to_writer(&mut *buf, events);
            }
            Item::EventsDropped => {
                let _ = serde_json::to_writer(&mut *buf, &events_dropped);
            }
        }
    }
    buf.push(b'}');
}

/// A document event's status from its text: the four stored values and their common synonyms;
/// `None` for anything else.
fn document_status(s: &str) -> Option<DocumentEventStatus> {
    let lower = s.to_ascii_lowercase();
    Some(match lower.as_str() {
        "error" | "fail" | "failure" | "errored" => DocumentEventStatus::Failed,
        "ok" | "success" | "succeeded" | "done" | "complete" => DocumentEventStatus::Completed,
        "start" | "running" | "in_progress" | "begin" => DocumentEventStatus::Started,
        "skip" => DocumentEventStatus::Skipped,
        other => return DocumentEventStatus::parse(other),
    })
}

/// Status and error of a closing span; a span closed while its thread panics is an error.
fn outcome(
    error: &Option<SpanError>,
    fields: &Fields,
    panicking: bool,
) -> (Status, Option<String>, Option<String>) {
    if let Some((ty, msg)) = error {
        return (Status::Error, Some(ty.clone()), msg.clone());
    }
    if let Some(err) = fields.get(Slot::Error) {
        let ty = fields
            .text(Slot::ErrorType)
            .unwrap_or_else(|| "error".to_owned());
        let msg = fields
            .text(Slot::ErrorMessage)
            .or_else(|| Some(err.to_text()));
        return (Status::Error, Some(ty), msg);
    }
    if fields.has(Slot::ErrorType) || fields.has(Slot::ErrorMessage) {
        return (
            Status::Error,
            Some(
                fields
                    .text(Slot::ErrorType)
                    .unwrap_or_else(|| "error".to_owned()),
            ),
            fields.text(Slot::ErrorMessage),
        );
    }
    if panicking {
        return (
            Status::Error,
            Some("panic".to_owned()),
            Some("the thread panicked while the span was open".to_owned()),
        );
    }
    (Status::Success, None, None)
}

/// The span's type: from `span_type`, else `gen_ai.operation.name`, else
/// `openinference.span.kind` (the lowest-ranked of these wins), else inferred from its fields.
pub(crate) fn span_type(f: &Fields) -> SpanType {
    if let Some(v) = f.get(Slot::SpanType) {
        let text = v.to_text();
        let lower = text.trim().to_ascii_lowercase();
        return match lower.as_str() {
            "chat" | "text_completion" | "generate_content" | "llm" | "generation" => SpanType::Llm,
            "embeddings" | "embedding" => SpanType::Embedding,
            "retrieval" | "retriever" => SpanType::Retrieval,
            "reranker" | "rerank" => SpanType::Rerank,
            "execute_tool" | "tool" => SpanType::Tool,
            "invoke_agent" | "create_agent" | "agent" => SpanType::Agent,
            "chain" | "internal" => SpanType::Internal,
            _ => SpanType::parse(&lower).unwrap_or(SpanType::Internal),
        };
    }
    if f.has(Slot::Model) || f.has(Slot::PromptTokens) || f.has(Slot::CompletionTokens) {
        SpanType::Llm
    } else if f.has(Slot::EmbeddingModel)
        || f.has(Slot::VectorCount)
        || f.has(Slot::VectorDimensions)
    {
        SpanType::Embedding
    } else if f.has(Slot::QueryText) || f.has(Slot::ResultCount) || f.has(Slot::TopScore) {
        SpanType::Retrieval
    } else if f.has(Slot::FileType) || f.has(Slot::PageCount) || f.has(Slot::FileSizeBytes) {
        SpanType::Parse
    } else if f.has(Slot::ChunkCount) || f.has(Slot::ChunkStrategy) {
        SpanType::Chunk
    } else if f.has(Slot::VectorsUpserted) || f.has(Slot::CollectionName) {
        SpanType::Index
    } else {
        SpanType::Internal
    }
}

/// What an event is, judged from its level and field names alone, before any value is
/// formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Chat,
    Document,
    Error,
    Attach,
    Ignore,
}

fn event_kind(event: &Event<'_>, attach: LevelFilter) -> EventKind {
    let meta = event.metadata();
    let mut role = false;
    let mut content = false;
    let mut document = false;
    let mut event_type = false;
    let mut error = false;
    for field in meta.fields() {
        match crate::fields::slot_of(field.name()) {
            Some((Slot::Role, _)) => role = true,
            Some((Slot::Content, _)) => content = true,
            Some((Slot::DocumentId, _)) => document = true,
            Some((Slot::EventType, _)) => event_type = true,
            Some((Slot::Error | Slot::ErrorType | Slot::ErrorMessage, _)) => error = true,
            _ => {}
        }
    }
    if role && content {
        EventKind::Chat
    } else if document && event_type {
        EventKind::Document
    } else if error || *meta.level() == Level::ERROR {
        EventKind::Error
    } else if attach >= *meta.level() {
        EventKind::Attach
    } else {
        EventKind::Ignore
    }
}

impl<S> tracing_subscriber::Layer<S> for PostgresLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        self.with_context = Some(WithContext(get_context::<S>));
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if on_writer_thread() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
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
            inherited.unwrap_or_else(|| {
                (
                    crate::ids::v7_at(now),
                    Arc::default(),
                    None,
                    None,
                    None,
                    None,
                )
            });
        let meta = attrs.metadata();
        // The record the span becomes, made now: its fields are recorded into it in place.
        // Allocated first and written in place: `Box::new` of the value builds it on the stack
        // and copies it into the allocation (about 300 bytes).
        let mut queued = Box::write(
            Box::new_uninit(),
            QueuedSpan {
                head: SpanHead {
                    name: meta.name(),
                    id: if is_root {
                        trace_id
                    } else {
                        crate::ids::v7_at(now)
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
        let fields = &mut queued.fields;
        attrs.record(&mut Collector(fields));
        // Fields declared without a value (`field::Empty`) are recorded later: room for them now.
        let late = meta.fields().len().saturating_sub(fields.len());
        if late > 0 {
            fields.reserve_known(late);
        }
        let mut data = SpanData {
            queued,
            is_root,
            state,
            user_id,
            session_id,
            kb_id,
            usage_below: false,
        };
        data.apply_ids(None);
        let name = span.name();
        if is_root {
            let row = self.trace_row(name, &data, None);
            self.push(Record::Trace(Box::new(row)));
        } else if self.config.span_starts {
            let row = self.span_row(name, &data);
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
                data.apply_ids(Some(&later));
                data.queued.fields.merge(later);
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
        if span.is_none() && matches!(kind, EventKind::Error | EventKind::Attach) {
            // Outside any span there is nothing to attach to: left out.
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut Collector(&mut fields));
        match kind {
            EventKind::Chat | EventKind::Document => {
                let ext = span.as_ref().map(|s| s.extensions());
                let data = ext.as_ref().and_then(|e| e.get::<SpanData>());
                if kind == EventKind::Chat {
                    self.on_chat_event(fields, data);
                } else {
                    self.on_document_event(fields, data);
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
            self.close_root(span.name(), data, counts);
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

/// The layer is also the provider: explicit calls go to the same queue.
impl crate::ObservabilityProvider for PostgresLayer {
    fn name(&self) -> &str {
        self.provider.name()
    }
    fn enabled(&self) -> bool {
        self.provider.enabled()
    }
    fn start_trace(
        &self,
        ctx: &TraceContext,
        name: &str,
        operation_type: crate::OperationType,
        metadata: Option<Value>,
    ) {
        self.provider
            .start_trace(ctx, name, operation_type, metadata);
    }
    fn end_trace(&self, ctx: &TraceContext, outcome: crate::Outcome, totals: crate::TraceTotals) {
        self.provider.end_trace(ctx, outcome, totals);
    }
    fn start_span(
        &self,
        ctx: &TraceContext,
        name: &str,
        span_type: SpanType,
        metadata: Option<Value>,
    ) -> crate::SpanId {
        self.provider.start_span(ctx, name, span_type, metadata)
    }
    fn end_span(&self, ctx: &TraceContext, span_id: crate::SpanId, end: crate::SpanEnd) {
        self.provider.end_span(ctx, span_id, end);
    }
    fn log_llm_call(&self, ctx: &TraceContext, call: crate::LlmCall) -> crate::SpanId {
        self.provider.log_llm_call(ctx, call)
    }
    fn log_chat_message(&self, ctx: &TraceContext, message: crate::ChatMessage) {
        self.provider.log_chat_message(ctx, message);
    }
    fn log_document_event(&self, ctx: &TraceContext, event: crate::DocumentEvent) {
        self.provider.log_document_event(ctx, event);
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
