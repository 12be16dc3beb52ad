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

use crate::sanitize::{TextLimits, clean_owned, clean_static};

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
}

/// The slot a field name fills and its rank (0 = the spec's own name), or `None` for a field
/// kept in metadata.
pub(crate) fn slot_of(name: &str) -> Option<(Slot, u8)> {
    use Slot::*;
    Some(match name {
        "span_type" => (SpanType, 0),
        "gen_ai.operation.name" => (SpanType, 1),
        "openinference.span.kind" => (SpanType, 2),
        "operation_type" => (OperationType, 0),
        "model" => (Model, 0),
        "gen_ai.request.model" => (Model, 1),
        "llm.model_name" => (Model, 2),
        "gen_ai.response.model" => (Model, 3),
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
        "temperature" => (Temperature, 0),
        "gen_ai.request.temperature" => (Temperature, 1),
        "session_id" => (SessionId, 0),
        "gen_ai.conversation.id" => (SessionId, 1),
        "session.id" => (SessionId, 2),
        "user_id" => (UserId, 0),
        "user.id" => (UserId, 1),
        "enduser.id" => (UserId, 2),
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
        "output_preview" => (OutputPreview, 0),
        "output.value" => (OutputPreview, 1),
        "error" => (Error, 0),
        "exception" => (Error, 1),
        "error_type" => (ErrorType, 0),
        "error.type" => (ErrorType, 1),
        "exception.type" => (ErrorType, 2),
        "error_message" => (ErrorMessage, 0),
        "error.message" => (ErrorMessage, 1),
        "exception.message" => (ErrorMessage, 2),
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
        _ => return None,
    })
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

/// The fields of one span or event, sorted into slots and the rest.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fields {
    known: Vec<(Slot, u8, Val)>,
    pub extra: Vec<(&'static str, Val)>,
}

impl Fields {
    /// No fields (and no allocation), for a `const` context.
    pub const fn new() -> Self {
        Self {
            known: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Makes room for `n` more fields of a well-known name, the usual kind of a field recorded
    /// late (tokens, previews), so that recording them does not grow the vector piecemeal.
    pub fn reserve_known(&mut self, n: usize) {
        self.known.reserve(n);
    }

    /// How many fields are set.
    pub fn len(&self) -> usize {
        self.known.len() + self.extra.len()
    }

    /// Removes every field, keeping the capacity.
    pub fn clear(&mut self) {
        self.known.clear();
        self.extra.clear();
    }

    /// Sets a field by name.
    pub fn put(&mut self, name: &'static str, val: Val) {
        match slot_of(name) {
            Some((slot, rank)) => match self.known.iter_mut().find(|(s, _, _)| *s == slot) {
                Some(entry) if rank <= entry.1 => *entry = (slot, rank, val),
                Some(_) => {}
                None => self.known.push((slot, rank, val)),
            },
            None => match self.extra.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = val,
                None => self.extra.push((name, val)),
            },
        }
    }

    /// Merges fields recorded later (`Span::record`) over these, leaving `later` empty with its
    /// capacity, to be used again.
    pub fn merge(&mut self, later: &mut Fields) {
        for (slot, rank, val) in later.known.drain(..) {
            match self.known.iter_mut().find(|(s, _, _)| *s == slot) {
                Some(entry) if rank <= entry.1 => *entry = (slot, rank, val),
                Some(_) => {}
                None => self.known.push((slot, rank, val)),
            }
        }
        for (name, val) in later.extra.drain(..) {
            match self.extra.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = val,
                None => self.extra.push((name, val)),
            }
        }
    }

    pub fn get(&self, slot: Slot) -> Option<&Val> {
        self.known
            .iter()
            .find(|(s, _, _)| *s == slot)
            .map(|(_, _, v)| v)
    }

    pub fn take(&mut self, slot: Slot) -> Option<Val> {
        let i = self.known.iter().position(|(s, _, _)| *s == slot)?;
        Some(self.known.swap_remove(i).2)
    }

    pub fn has(&self, slot: Slot) -> bool {
        self.get(slot).is_some()
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

    /// Whether the span carries token usage or cost.
    pub fn has_usage(&self) -> bool {
        self.has(Slot::PromptTokens) || self.has(Slot::CompletionTokens) || self.has(Slot::CostUsd)
    }

    /// Takes the fields kept in metadata, as a JSON object already sanitised (flat values: no
    /// second pass needed).
    pub fn take_extra_json(
        &mut self,
        limits: &TextLimits,
    ) -> serde_json::Map<String, serde_json::Value> {
        self.extra
            .drain(..)
            .map(|(name, val)| {
                // Field names are compile-time strings: cleaning is a length check and a scan.
                (
                    clean_static(name, limits.label).into_owned(),
                    val.into_clean_json(limits.content),
                )
            })
            .collect()
    }
}

/// A span's fields as queued when it closes: up to [`PACKED_INLINE`] entries stored inline, in
/// the queued record's own allocation.
///
/// Why: the vectors of [`Fields`] are allocated on the application's thread while the span is
/// open. Queued as they are, they would be freed on the writer's thread, and with glibc's
/// allocator (and others with per-thread caches) such cross-thread frees take the allocating
/// arena's lock and leave the application thread's cache empty, so every span's next
/// allocation took the slow path and touched fresh pages. Packed, the vectors are freed on the
/// thread that made them (and reused by its next span), and the writer gets one allocation
/// per span. [`unpack`](Packed::unpack) rebuilds the [`Fields`] on the writer's thread.
#[derive(Debug)]
pub(crate) struct Packed(SmallVec<[(Key, Val); PACKED_INLINE]>);

/// Entries a [`Packed`] holds without an allocation of its own: the three or four fields of a
/// typical span. More spill to the heap, as a vector did before.
pub(crate) const PACKED_INLINE: usize = 4;

/// Where a packed entry goes: a well-known slot (with its alias rank) or a metadata key.
#[derive(Debug)]
pub(crate) enum Key {
    /// A column's slot, and the rank of the alias it was recorded under.
    Known(Slot, u8),
    /// A field kept in `metadata`, under its own name.
    Extra(&'static str),
}

impl Fields {
    /// Moves the entries into their queued form, leaving these fields empty with their
    /// capacity: the layer keeps the vectors for the thread's next span.
    pub fn pack(&mut self) -> Packed {
        let known = self.known.drain(..).map(|(s, r, v)| (Key::Known(s, r), v));
        let extra = self.extra.drain(..).map(|(n, v)| (Key::Extra(n), v));
        Packed(known.chain(extra).collect())
    }
}

impl Packed {
    /// The fields again, for mapping to columns (on the writer's thread).
    pub fn unpack(self) -> Fields {
        let known = self
            .0
            .iter()
            .filter(|(k, _)| matches!(k, Key::Known(..)))
            .count();
        let mut f = Fields {
            known: Vec::with_capacity(known),
            extra: Vec::with_capacity(self.0.len() - known),
        };
        for (key, val) in self.0 {
            match key {
                Key::Known(slot, rank) => f.known.push((slot, rank, val)),
                Key::Extra(name) => f.extra.push((name, val)),
            }
        }
        f
    }

    /// Approximate heap bytes beyond the queued record itself, for the queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        let spilled = if self.0.spilled() {
            self.0.capacity() * std::mem::size_of::<(Key, Val)>()
        } else {
            0
        };
        spilled
            + self
                .0
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
mod tests {
    use super::*;

    fn sample(extra: usize) -> Fields {
        let mut f = Fields::default();
        f.put("gen_ai.request.model", Val::S("alias".into()));
        f.put("model", Val::S("gpt-4o-mini".into()));
        f.put("prompt_tokens", Val::I(12));
        for i in 0..extra {
            let name: &'static str = ["route", "attempt", "score", "region", "tenant"][i];
            f.put(name, Val::U(i as u64));
        }
        f
    }

    #[test]
    fn packing_keeps_every_field_its_slot_and_its_rank() {
        // Within the inline capacity, and spilled beyond it.
        for extra in [0, 1, 5] {
            let before = sample(extra);
            let mut emptied = before.clone();
            let packed = emptied.pack();
            assert_eq!(emptied.len(), 0, "{extra}");
            assert!(emptied.known.capacity() >= 2, "{extra}");
            assert_eq!(packed.0.spilled(), 2 + extra > PACKED_INLINE, "{extra}");
            let mut after = packed.unpack();
            assert_eq!(after.known, before.known, "{extra}");
            assert_eq!(after.extra, before.extra, "{extra}");
            // The rank still decides: a lower-priority alias recorded later does not win.
            after.put("llm.model_name", Val::S("late alias".into()));
            assert_eq!(after.text(Slot::Model).as_deref(), Some("gpt-4o-mini"));
        }
    }

    #[test]
    fn packed_bytes_count_spilled_entries_and_long_text_only() {
        let inline = sample(1).pack();
        assert_eq!(inline.approx_bytes(), 0, "short text and inline entries");
        let mut long = Fields::default();
        long.put("query_text", Val::S("q".repeat(100).into()));
        assert!(long.pack().approx_bytes() >= 100);
        let spilled = sample(5).pack();
        assert!(spilled.approx_bytes() >= 7 * std::mem::size_of::<(Key, Val)>());
    }
}
