//! The mapping table in code: which `tracing` field names fill which column.
//!
//! Each well-known slot accepts the spec's own name and the OpenTelemetry GenAI and
//! OpenInference aliases. When a span carries several names for one slot, the one of lowest
//! rank wins (the spec's name is rank 0), whatever the order they are recorded in. Every other
//! field is kept in `metadata` under its own name.

use std::fmt;

use compact_str::{CompactString, ToCompactString};
use smallvec::SmallVec;
use tracing::field::{Field, Visit};

use super::sanitize::{TextLimits, clean_owned, clean_static};

/// A column (or event role) a field can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    SpanType,
    OperationType,
    Model,
    PromptTokens,
    CompletionTokens,
    CostUsd,
    Temperature,
    SessionId,
    UserId,
    KbId,
    EmbeddingModel,
    VectorCount,
    VectorDimensions,
    QueryText,
    ResultCount,
    TopScore,
    FileType,
    FileSizeBytes,
    PageCount,
    ChunkCount,
    ChunkStrategy,
    VectorsUpserted,
    CollectionName,
    InputPreview,
    OutputPreview,
    Error,
    ErrorType,
    ErrorMessage,
    Message,
    Role,
    Content,
    TurnNumber,
    Sources,
    Citations,
    ResponseTimeMs,
    DocumentId,
    EventType,
    Status,
    DurationMs,
    ExtractedPages,
    ExtractedChars,
    TablesFound,
    ImagesFound,
    ChunksCreated,
    AvgChunkSize,
    VectorsGenerated,
    Retryable,
    RetryCount,
    /// The span's display name of the OpenTelemetry bridge (`otel.name`).
    OtelName,
    /// The OpenTelemetry status (`otel.status_code`: `ok`, `error`, `unset`).
    OtelStatus,
    /// Token usage as a JSON object in a string (`langfuse.usage`).
    UsageJson,
    /// A request's system instructions: kept in metadata, cut to a preview's length.
    SystemInstructions,
    /// The tools offered to a model: kept in metadata, cut to a preview's length.
    ToolDefinitions,
    /// A root span's remote parent, as a W3C `traceparent` value: read when the span starts
    /// (or is recorded before its first child), not stored.
    TraceParent,
    /// The W3C `tracestate` that came with the `traceparent`: passed on, not stored.
    TraceState,
    /// A score event's name (`score_name`): the event is a row of `scores`.
    ScoreName,
    /// A score event's value: a bool, a number or a label.
    ScoreValue,
    /// A score event's comment.
    ScoreComment,
    /// Who or what gave the score (`user`, `model`, `rule`, `api`).
    ScoreSource,
    /// Who gave the score.
    ScoreAuthor,
    /// The chat message a score event judges.
    ScoreMessageId,
}

/// The well-known names: the slot each fills and its rank (0 = the spec's own name). One list
/// makes both the lookup (`match`) and the table of name shapes that rejects most other
/// names before it.
macro_rules! well_known_names {
    ($($name:literal => ($slot:ident, $rank:literal),)*) => {
        /// Every well-known name.
        const WELL_KNOWN: &[&str] = &[$($name),*];

        /// The slot and rank of a well-known name.
        fn lookup(name: &str) -> Option<(Slot, u8)> {
            use Slot::*;
            Some(match name {
                $($name => ($slot, $rank),)*
                _ => return None,
            })
        }
    };
}

well_known_names! {
        "span_type" => (SpanType, 0),
        "gen_ai.operation.name" => (SpanType, 1),
        "openinference.span.kind" => (SpanType, 2),
        "langfuse.type" => (SpanType, 3),
        "langfuse.observation.type" => (SpanType, 4),
        "operation_type" => (OperationType, 0),
        "model" => (Model, 0),
        "gen_ai.request.model" => (Model, 1),
        "llm.model_name" => (Model, 2),
        "gen_ai.response.model" => (Model, 3),
        "langfuse.model" => (Model, 4),
        "langfuse.observation.model.name" => (Model, 5),
        "prompt_tokens" => (PromptTokens, 0),
        "gen_ai.usage.input_tokens" => (PromptTokens, 1),
        "llm.token_count.prompt" => (PromptTokens, 2),
        "input_tokens" => (PromptTokens, 3),
        "completion_tokens" => (CompletionTokens, 0),
        "gen_ai.usage.output_tokens" => (CompletionTokens, 1),
        "llm.token_count.completion" => (CompletionTokens, 2),
        "output_tokens" => (CompletionTokens, 3),
        "cost_usd" => (CostUsd, 0),
        "llm.cost.total" => (CostUsd, 1),
        "gen_ai.usage.cost" => (CostUsd, 2),
        "cost" => (CostUsd, 3),
        "langfuse.cost" => (CostUsd, 4),
        "langfuse.observation.cost_details" => (CostUsd, 5),
        "temperature" => (Temperature, 0),
        "gen_ai.request.temperature" => (Temperature, 1),
        "session_id" => (SessionId, 0),
        "gen_ai.conversation.id" => (SessionId, 1),
        "session.id" => (SessionId, 2),
        "langfuse.session_id" => (SessionId, 3),
        "langfuse.session.id" => (SessionId, 4),
        "user_id" => (UserId, 0),
        "user.id" => (UserId, 1),
        "enduser.id" => (UserId, 2),
        "langfuse.user_id" => (UserId, 3),
        "langfuse.user.id" => (UserId, 4),
        "kb_id" => (KbId, 0),
        "gen_ai.data_source.id" => (KbId, 1),
        "embedding_model" => (EmbeddingModel, 0),
        "embedding.model_name" => (EmbeddingModel, 1),
        "vector_count" => (VectorCount, 0),
        "vector_dimensions" => (VectorDimensions, 0),
        "gen_ai.embeddings.dimension.count" => (VectorDimensions, 1),
        "query_text" => (QueryText, 0),
        "gen_ai.retrieval.query.text" => (QueryText, 1),
        "retrieval.query" => (QueryText, 2),
        "result_count" => (ResultCount, 0),
        "retrieval.documents.count" => (ResultCount, 1),
        "top_score" => (TopScore, 0),
        "file_type" => (FileType, 0),
        "file_size_bytes" => (FileSizeBytes, 0),
        "page_count" => (PageCount, 0),
        "chunk_count" => (ChunkCount, 0),
        "chunk_strategy" => (ChunkStrategy, 0),
        "vectors_upserted" => (VectorsUpserted, 0),
        "collection_name" => (CollectionName, 0),
        "input_preview" => (InputPreview, 0),
        "input.value" => (InputPreview, 1),
        "gen_ai.input.messages" => (InputPreview, 2),
        "gen_ai.prompt" => (InputPreview, 3),
        "gen_ai.tool.call.arguments" => (InputPreview, 4),
        "langfuse.input" => (InputPreview, 5),
        "langfuse.observation.input" => (InputPreview, 6),
        "output_preview" => (OutputPreview, 0),
        "output.value" => (OutputPreview, 1),
        "gen_ai.output.messages" => (OutputPreview, 2),
        "gen_ai.completion" => (OutputPreview, 3),
        "gen_ai.tool.call.result" => (OutputPreview, 4),
        "langfuse.output" => (OutputPreview, 5),
        "langfuse.observation.output" => (OutputPreview, 6),
        "error" => (Error, 0),
        "exception" => (Error, 1),
        "error_type" => (ErrorType, 0),
        "error.type" => (ErrorType, 1),
        "exception.type" => (ErrorType, 2),
        "gen_ai.tool.error.type" => (ErrorType, 3),
        "error_message" => (ErrorMessage, 0),
        "error.message" => (ErrorMessage, 1),
        "exception.message" => (ErrorMessage, 2),
        "otel.status_description" => (ErrorMessage, 3),
        "message" => (Message, 0),
        "role" => (Role, 0),
        "gen_ai.message.role" => (Role, 1),
        "content" => (Content, 0),
        "gen_ai.message.content" => (Content, 1),
        "turn_number" => (TurnNumber, 0),
        "sources" => (Sources, 0),
        "citations" => (Citations, 0),
        "response_time_ms" => (ResponseTimeMs, 0),
        "document_id" => (DocumentId, 0),
        "event_type" => (EventType, 0),
        "status" => (Status, 0),
        "duration_ms" => (DurationMs, 0),
        "extracted_pages" => (ExtractedPages, 0),
        "extracted_chars" => (ExtractedChars, 0),
        "tables_found" => (TablesFound, 0),
        "images_found" => (ImagesFound, 0),
        "chunks_created" => (ChunksCreated, 0),
        "avg_chunk_size" => (AvgChunkSize, 0),
        "vectors_generated" => (VectorsGenerated, 0),
        "retryable" => (Retryable, 0),
        "retry_count" => (RetryCount, 0),
        "otel.name" => (OtelName, 0),
        "otel.status_code" => (OtelStatus, 0),
        "langfuse.usage" => (UsageJson, 0),
        "langfuse.observation.usage_details" => (UsageJson, 1),
        "gen_ai.system_instructions" => (SystemInstructions, 0),
        "gen_ai.tool.definitions" => (ToolDefinitions, 0),
        "traceparent" => (TraceParent, 0),
        "tracestate" => (TraceState, 0),
        "score_name" => (ScoreName, 0),
        "score_value" => (ScoreValue, 0),
        "score_comment" => (ScoreComment, 0),
        "score_source" => (ScoreSource, 0),
        "score_author" => (ScoreAuthor, 0),
        "score_message_id" => (ScoreMessageId, 0),
}

/// For each first byte (ASCII), a bit per length (lengths of 63 and more share bit 63) that
/// some well-known name has: most other names (a route, an attempt, a score) fail this in a
/// few instructions, before the string comparisons of [`lookup`].
static NAME_SHAPES: [u64; 128] = name_shapes(WELL_KNOWN);

const fn name_shapes(names: &[&str]) -> [u64; 128] {
    let mut table = [0u64; 128];
    let mut i = 0;
    while i < names.len() {
        let name = names[i].as_bytes();
        // Every well-known name is non-empty ASCII (checked by a test).
        table[(name[0] & 0x7f) as usize] |= 1 << shape_bit(name.len());
        i += 1;
    }
    table
}

const fn shape_bit(len: usize) -> u32 {
    if len < 63 { len as u32 } else { 63 }
}

/// The slot a field name fills and its rank (0 = the spec's own name), or `None` for a field
/// kept in metadata.
pub(crate) fn slot_of(name: &str) -> Option<(Slot, u8)> {
    let first = *name.as_bytes().first()?;
    let shapes = NAME_SHAPES.get(usize::from(first)).copied().unwrap_or(0);
    if shapes & (1 << shape_bit(name.len())) == 0 {
        return None;
    }
    lookup(name)
}

/// A field's value as `tracing` gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    /// Text: up to 24 bytes kept inline, so the usual short values (a route, a model name, a
    /// status) cost no allocation on the caller's thread.
    S(CompactString),
}

impl Val {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::S(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text (numbers printed).
    pub fn to_text(&self) -> String {
        match self {
            Val::I(v) => v.to_string(),
            Val::U(v) => v.to_string(),
            Val::F(v) => v.to_string(),
            Val::B(v) => v.to_string(),
            Val::S(s) => s.to_string(),
        }
    }

    /// The value as an integer: integers in range, integral floats, and numeric text.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::I(v) => Some(*v),
            Val::U(v) => i64::try_from(*v).ok(),
            Val::F(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => Some(*v as i64),
            Val::S(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a float: numbers and numeric text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::I(v) => Some(*v as f64),
            Val::U(v) => Some(*v as f64),
            Val::F(v) => Some(*v),
            Val::S(s) => s.trim().parse().ok(),
            Val::B(_) => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Val::B(b) => Some(*b),
            Val::S(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as JSON, a string cleaned of NULs and cut to `max_chars`.
    pub fn into_clean_json(self, max_chars: usize) -> serde_json::Value {
        match self {
            Val::S(s) => serde_json::Value::String(clean_owned(s.into_string(), max_chars)),
            other => other.into_json(),
        }
    }

    pub fn into_json(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Val::I(v) => J::from(v),
            Val::U(v) => J::from(v),
            Val::F(v) => {
                serde_json::Number::from_f64(v).map_or_else(|| J::String(v.to_string()), J::Number)
            }
            Val::B(v) => J::Bool(v),
            Val::S(s) => J::String(s.into_string()),
        }
    }
}

/// The fields of one span or event: the well-known slots (with the rank of the alias each was
/// recorded under) first, then the metadata keys in the order first recorded. A slot's lookup
/// stops at the first metadata key: the writer looks up some twenty slots per span.
///
/// Up to [`INLINE_FIELDS`] entries are stored inline. A span's fields live in its registry
/// extension while it is open and move, as they are, into the record queued at its close, so
/// the three or four fields of a typical span cost no allocation on the application's thread
/// and no free on the writer's. (With glibc's allocator and others with per-thread caches, a
/// block freed on another thread than the one that allocated it takes the allocating arena's
/// lock and leaves the allocating thread's cache empty.) More fields spill to the heap.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Fields {
    entries: SmallVec<[(Key, Val); INLINE_FIELDS]>,
    /// How many entries, at the front, are slots.
    known: usize,
    /// Whether a user, session or knowledge-base id was recorded: most spans name none, and
    /// the layer then skips looking for them.
    names_ids: bool,
}

/// Entries a [`Fields`] holds without an allocation of its own: the three or four fields of a
/// typical span.
pub(crate) const INLINE_FIELDS: usize = 4;

/// Where an entry goes: a well-known slot (with its alias rank) or a metadata key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Key {
    /// A column's slot, and the rank of the alias it was recorded under.
    Known(Slot, u8),
    /// A field kept in `metadata`, under its own name.
    Extra(&'static str),
}

impl Fields {
    /// Makes room for `n` more fields of a well-known name, the usual kind of a field recorded
    /// late (tokens, previews), so that recording them does not grow the storage piecemeal.
    pub fn reserve_known(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// How many fields are set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sets a field by name.
    pub fn put(&mut self, name: &'static str, val: Val) {
        let key = match slot_of(name) {
            Some((slot, rank)) => Key::Known(slot, rank),
            None => Key::Extra(name),
        };
        self.put_key(key, val);
    }

    /// Sets a field by its key: a slot keeps the value of its lowest-ranked alias, a metadata
    /// key its last value.
    fn put_key(&mut self, key: Key, val: Val) {
        match key {
            Key::Known(slot, rank) => {
                for entry in &mut self.entries[..self.known] {
                    if let Key::Known(s, old) = entry.0
                        && s == slot
                    {
                        if rank <= old {
                            *entry = (key, val);
                        }
                        return;
                    }
                }
                if self.known == self.entries.len() {
                    self.entries.push((key, val));
                } else {
                    self.entries.insert(self.known, (key, val));
                }
                self.known += 1;
                self.names_ids |= matches!(slot, Slot::UserId | Slot::SessionId | Slot::KbId);
            }
            Key::Extra(name) => {
                for entry in &mut self.entries[self.known..] {
                    if let Key::Extra(n) = entry.0
                        && n == name
                    {
                        entry.1 = val;
                        return;
                    }
                }
                self.entries.push((key, val));
            }
        }
    }

    /// Merges fields recorded later (`Span::record`) over these.
    pub fn merge(&mut self, later: Fields) {
        for (key, val) in later.entries {
            self.put_key(key, val);
        }
    }

    fn position(&self, slot: Slot) -> Option<usize> {
        self.entries[..self.known]
            .iter()
            .position(|(k, _)| matches!(k, Key::Known(s, _) if *s == slot))
    }

    pub fn get(&self, slot: Slot) -> Option<&Val> {
        self.position(slot).map(|i| &self.entries[i].1)
    }

    /// Removes a slot's value, keeping the other entries in their order.
    pub fn take(&mut self, slot: Slot) -> Option<Val> {
        let i = self.position(slot)?;
        self.known -= 1;
        Some(self.entries.remove(i).1)
    }

    /// A slot's value and the rank of the alias it was recorded under.
    pub fn get_ranked(&self, slot: Slot) -> Option<(u8, &Val)> {
        self.entries[..self.known]
            .iter()
            .find_map(|(k, v)| match k {
                Key::Known(s, rank) if *s == slot => Some((*rank, v)),
                _ => None,
            })
    }

    /// A field kept in metadata, by name.
    pub fn extra(&self, name: &str) -> Option<&Val> {
        self.extras().find_map(|(n, v)| (n == name).then_some(v))
    }

    pub fn has(&self, slot: Slot) -> bool {
        self.position(slot).is_some()
    }

    pub fn text(&self, slot: Slot) -> Option<String> {
        self.get(slot).map(Val::to_text)
    }

    pub fn i64(&self, slot: Slot) -> Option<i64> {
        self.get(slot).and_then(Val::as_i64)
    }

    pub fn i32(&self, slot: Slot) -> Option<i32> {
        self.i64(slot).and_then(|v| i32::try_from(v).ok())
    }

    pub fn f64(&self, slot: Slot) -> Option<f64> {
        self.get(slot).and_then(Val::as_f64)
    }

    pub fn bool(&self, slot: Slot) -> Option<bool> {
        self.get(slot).and_then(Val::as_bool)
    }

    /// Whether a user, session or knowledge-base id was recorded (and perhaps taken since).
    pub fn names_ids(&self) -> bool {
        self.names_ids
    }

    /// The values of several slots, in one pass over the fields.
    pub fn get_many<const N: usize>(&self, slots: [Slot; N]) -> [Option<&Val>; N] {
        let mut found = [None; N];
        for (key, val) in &self.entries[..self.known] {
            if let Key::Known(slot, _) = key
                && let Some(i) = slots.iter().position(|s| s == slot)
            {
                found[i] = Some(val);
            }
        }
        found
    }

    /// Whether the span carries token usage or cost.
    pub fn has_usage(&self) -> bool {
        self.entries[..self.known].iter().any(|(k, _)| {
            matches!(
                k,
                Key::Known(
                    Slot::PromptTokens | Slot::CompletionTokens | Slot::CostUsd | Slot::UsageJson,
                    _
                )
            )
        })
    }

    /// The fields kept in metadata, in the order first recorded.
    pub fn extras(&self) -> impl Iterator<Item = (&'static str, &Val)> {
        self.entries[self.known..]
            .iter()
            .filter_map(|(k, v)| match k {
                Key::Extra(name) => Some((*name, v)),
                Key::Known(..) => None,
            })
    }

    /// Takes the fields kept in metadata, as a JSON object already sanitised (flat values: no
    /// second pass needed).
    pub fn take_extra_json(
        &mut self,
        limits: &TextLimits,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut json = serde_json::Map::new();
        for (key, val) in self.entries.drain(self.known..) {
            // Field names are compile-time strings: cleaning is a length check and a scan.
            if let Key::Extra(name) = key {
                json.insert(
                    clean_static(name, limits.label).into_owned(),
                    val.into_clean_json(limits.content),
                );
            }
        }
        json
    }

    /// Approximate heap bytes beyond the record holding these fields, for the queue's byte
    /// budget: spilled entries and text too long to be stored inline.
    pub fn approx_bytes(&self) -> usize {
        let spilled = if self.entries.spilled() {
            self.entries.capacity() * std::mem::size_of::<(Key, Val)>()
        } else {
            0
        };
        spilled
            + self
                .entries
                .iter()
                .map(|(_, v)| match v {
                    Val::S(s) if s.is_heap_allocated() => s.capacity(),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

/// Collects a span's or event's fields. Formatting a user's `Debug` or `Display` value happens
/// here, before any lock is taken, so a value whose formatting touches tracing cannot deadlock.
pub(crate) struct Collector<'a>(pub &'a mut Fields);

impl Visit for Collector<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.put(field.name(), Val::I(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.put(field.name(), Val::U(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        match i64::try_from(value) {
            Ok(v) => self.0.put(field.name(), Val::I(v)),
            Err(_) => self.0.put(field.name(), Val::S(value.to_compact_string())),
        }
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        match u64::try_from(value) {
            Ok(v) => self.0.put(field.name(), Val::U(v)),
            Err(_) => self.0.put(field.name(), Val::S(value.to_compact_string())),
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.put(field.name(), Val::F(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.put(field.name(), Val::B(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.put(field.name(), Val::S(CompactString::from(value)));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.put(field.name(), Val::S(value.to_compact_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // A user's Debug impl may panic; the layer must not pass that on to the application.
        let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| format!("{value:?}")))
            .unwrap_or_else(|_| "[formatting panicked]".to_owned());
        self.0.put(field.name(), Val::S(text.into()));
    }
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
