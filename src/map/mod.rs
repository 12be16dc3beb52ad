//! Pure mapping from what was captured to rows: a closed span's columns, usage and outcome, its
//! metadata, a root span's trace row, the events that are rows of their own, scores, the explicit
//! provider's inputs, and the privacy settings applied to a row.
//!
//! Nothing here knows which thread it runs on: the layer maps a root span and an event on the
//! application's thread, the writer maps closed spans and LLM calls on its own. The one entry
//! point for a queued record is [`map`], given the one [`MapConfig`].

mod config;
mod content;
mod events;
mod inputs;
mod jsonb_text;
mod metadata;
pub mod privacy;
mod scores;
mod span;
mod span_type;
mod trace;
mod usage;

pub(crate) use config::{MapConfig, Scope};
pub(crate) use events::{chat_event, document_event};
pub(crate) use inputs::{
    chat_row, document_row, has_usage, merge_metadata, metadata, outcome, span_metrics,
};
pub(crate) use metadata::parse_uuid;
pub(crate) use scores::{score_event, score_row};
pub(crate) use span::ClosedSpan;
pub(crate) use span_type::span_type;
pub(crate) use trace::{origin_part, part, root_end, root_start};
pub(crate) use usage::usage;

use crate::model::record::Record;
use crate::model::rows::{ChatMessageRow, DocumentEventRow, PartRow, ScoreRow, SpanRow, TraceRow};

/// What a queued record becomes.
///
/// A closed span's row is held inline: a `Mapped` is consumed as soon as it is made, and
/// boxing the row would cost an allocation per span.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Mapped {
    Trace(Box<TraceRow>),
    Span(Box<SpanRow>),
    /// A closed span no other batch can have written (its start was not sent), its metadata
    /// still to be written: a plain `COPY` can take it.
    Closed(ClosedSpan),
    Chat(Box<ChatMessageRow>),
    Document(Box<DocumentEventRow>),
    Part(Box<PartRow>),
    Score(Box<ScoreRow>),
}

impl Mapped {
    /// Back to a queue record whose rows are complete (for the privacy settings, which see
    /// the finished row before it is queued).
    pub(crate) fn into_record(self) -> Record {
        match self {
            Mapped::Trace(r) => Record::Trace(r),
            Mapped::Span(r) => Record::Span(r),
            Mapped::Closed(c) => Record::Span(Box::new(c.into_row())),
            Mapped::Chat(r) => Record::Chat(r),
            Mapped::Document(r) => Record::Document(r),
            Mapped::Part(r) => Record::Part(r),
            Mapped::Score(r) => Record::Score(r),
        }
    }
}

/// Maps a queued record to its rows.
pub(crate) fn map(config: &MapConfig, record: Record) -> Mapped {
    match record {
        Record::Trace(r) => Mapped::Trace(r),
        Record::Span(r) => Mapped::Span(r),
        Record::Chat(r) => Mapped::Chat(r),
        Record::Document(r) => Mapped::Document(r),
        Record::Part(r) => Mapped::Part(r),
        Record::Score(r) => Mapped::Score(r),
        Record::Closed(span) => {
            let closed = span::closed_span(config, span);
            if config.span_starts {
                // Its start went out on its own: the end must meet it through the upsert.
                Mapped::Span(Box::new(closed.into_row()))
            } else {
                Mapped::Closed(closed)
            }
        }
        // An explicit LLM call is logged whole: never a start, never merged.
        Record::Llm(call) => Mapped::Closed(ClosedSpan::complete(inputs::llm_call(
            &config.limits,
            *call,
        ))),
    }
}
