//! A closed span of the layer mapped to its row: its columns from the well-known fields, its
//! usage and cost, its outcome; its metadata is written by [`ClosedSpan::write_metadata`]
//! (straight to JSON text for `COPY`) or built by [`ClosedSpan::into_row`].

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::config::MapConfig;
use super::content::{Side, flattened, readable};
use super::metadata::Metadata;
use super::span_type::span_type;
use super::usage::usage;
use crate::model::fields::{Fields, Slot};
use crate::model::kinds::Status;
use crate::model::record::{CapturedSpan, SpanError};
use crate::model::rows::SpanRow;
use crate::model::sanitize::{TextLimits, clean_cow, clean_owned, clean_static, clean_text};
use crate::model::values::{count, count32, finite, millis_between_times};

/// A closed span mapped to its row, the metadata still to be made from what was captured
/// (or already a JSON value, for an explicit LLM call).
#[derive(Debug)]
pub(crate) struct ClosedSpan {
    /// The row; its `metadata` is `Null` until [`into_row`](Self::into_row) unless `captured`
    /// is `None`.
    pub row: SpanRow,
    /// What the metadata is made of, the limits it is cut to, and whether the transport
    /// fields are kept.
    captured: Option<(TextLimits, bool, Box<CapturedSpan>)>,
}

impl ClosedSpan {
    /// A span whose row (metadata included) is complete.
    pub(crate) fn complete(row: SpanRow) -> Self {
        Self {
            row,
            captured: None,
        }
    }

    /// The span's metadata, as JSON text.
    pub(crate) fn write_metadata(&self, buf: &mut Vec<u8>) {
        match &self.captured {
            Some((limits, transport, span)) => {
                metadata_of(limits, *transport, span).write_json(buf);
            }
            None if self.row.metadata.is_null() => buf.extend_from_slice(b"{}"),
            // Writing into a Vec cannot fail.
            None => {
                let _ = serde_json::to_writer(&mut *buf, &self.row.metadata);
            }
        }
    }

    /// The complete row, its metadata as a JSON value.
    pub(crate) fn into_row(self) -> SpanRow {
        let mut row = self.row;
        if let Some((limits, transport, span)) = &self.captured {
            row.metadata = Value::Object(metadata_of(limits, *transport, span).to_map());
        }
        row
    }
}

/// The metadata of a captured span.
fn metadata_of<'a>(
    limits: &'a TextLimits,
    otel_transport_fields: bool,
    span: &'a CapturedSpan,
) -> Metadata<'a> {
    let (events, events_dropped) = span
        .rare
        .as_ref()
        .map_or((&[][..], 0), |r| (&r.events[..], r.events_dropped));
    Metadata {
        limits,
        callsite: span.head.name,
        otel_transport_fields,
        fields: &span.fields,
        events,
        events_dropped,
    }
}

/// Maps a closed span of the layer.
pub(crate) fn closed_span(config: &MapConfig, span: Box<CapturedSpan>) -> ClosedSpan {
    ClosedSpan {
        row: span_columns(config, &span),
        captured: Some((config.limits, config.otel_transport_fields, span)),
    }
}

/// The row of a closed span without its metadata (`Null`).
fn span_columns(config: &MapConfig, raw: &CapturedSpan) -> SpanRow {
    let l = &config.limits;
    let f = &raw.fields;
    let error = raw.rare.as_ref().and_then(|r| r.error.as_ref());
    let (started_at, ended_at) = (
        DateTime::<Utc>::from(raw.head.started_at),
        DateTime::<Utc>::from(raw.head.ended_at),
    );
    let (prompt, completion, cost, cost_source) = usage(config, f);
    // OpenInference's flattened messages, looked for once: most spans have none, and the
    // search for them walks every metadata field.
    let flat = f.extras().any(|(name, _)| name.starts_with("llm."));
    let (status, error_type, error_message) = outcome(error, f, raw.head.panicking);
    SpanRow {
        id: raw.head.id,
        trace_id: raw.head.trace_id,
        parent_span_id: raw.head.parent,
        name: display_name(l, raw),
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
        input_preview: preview(f, Slot::InputPreview, Side::Input, flat)
            .map(|s| clean_owned(s, l.preview)),
        output_preview: preview(f, Slot::OutputPreview, Side::Output, flat)
            .map(|s| clean_owned(s, l.preview)),
        metadata: Value::Null,
        start_sent: config.span_starts,
    }
}

/// The span's name: the OpenTelemetry bridge's `otel.name` when it has one (`chat
/// gpt-4o-mini`; the callsite's name is then kept in metadata), else the callsite's.
pub(crate) fn display_name(l: &TextLimits, raw: &CapturedSpan) -> Cow<'static, str> {
    match raw.fields.get(Slot::OtelName) {
        Some(v) => {
            let name = clean_text(v.to_text().trim(), l.label);
            if name.is_empty() {
                clean_static(raw.head.name, l.label)
            } else {
                Cow::Owned(name)
            }
        }
        None => clean_static(raw.head.name, l.label),
    }
}

/// A preview: the spec's own field as given; a convention's message list or JSON value read
/// for its readable text (the last user message, the answer); else OpenInference's flattened
/// messages.
fn preview(f: &Fields, slot: Slot, side: Side, flat: bool) -> Option<String> {
    match f.get_ranked(slot) {
        Some((0, v)) => Some(v.to_text()),
        Some((_, v)) => Some(match v.as_str() {
            Some(text) => readable(text, side),
            None => v.to_text(),
        }),
        None if flat => flattened(f, side),
        None => None,
    }
}

/// Status and error of a closing span; a span closed while its thread panics is an error.
pub(crate) fn outcome(
    error: Option<&SpanError>,
    fields: &Fields,
    panicking: bool,
) -> (Status, Option<String>, Option<String>) {
    if let Some((ty, msg)) = error {
        return (Status::Error, Some(ty.clone()), msg.clone());
    }
    // The OpenTelemetry status: `error` is a failure whatever else is set, `ok` a success
    // unless an error event or an `error` field says otherwise.
    let otel = fields
        .get(Slot::OtelStatus)
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_ascii_lowercase());
    match otel.as_deref() {
        Some("error") => {
            let ty = fields
                .text(Slot::ErrorType)
                .unwrap_or_else(|| "error".to_owned());
            let msg = fields
                .text(Slot::ErrorMessage)
                .or_else(|| fields.text(Slot::Error));
            return (Status::Error, Some(ty), msg);
        }
        Some("ok") if !fields.has(Slot::Error) && !panicking => {
            return (Status::Success, None, None);
        }
        _ => {}
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
