//! What an event is for the layer (a chat message, a document event, a score, a call's fields for its
//! span, a span's error, an event to attach, or nothing), judged from its level and field
//! names before any value is formatted.

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level};

use crate::model::fields::{Slot, slot_of};

/// What an event is, judged from its level and field names alone, before any value is
/// formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventKind {
    Chat,
    Document,
    /// A score (`score_name` and `score_value`) of the event's span or trace.
    Score,
    /// The fields of a call reported on an event inside its span, in the Langfuse convention
    /// (`langfuse.model`, `langfuse.usage`, `langfuse.input`...): they fill the span's columns,
    /// at any level the layer sees.
    Fill,
    Error,
    Attach,
    Ignore,
}

pub(super) fn event_kind(event: &Event<'_>, attach: LevelFilter) -> EventKind {
    let meta = event.metadata();
    let mut role = false;
    let mut content = false;
    let mut document = false;
    let mut event_type = false;
    let mut score = false;
    let mut error = false;
    let mut fill = false;
    for field in meta.fields() {
        let name = field.name();
        let slot = slot_of(name);
        // Only well-known names are looked at twice: the Langfuse ones all are.
        fill |= slot.is_some() && name.starts_with("langfuse.");
        match slot {
            Some((Slot::Role, _)) => role = true,
            Some((Slot::Content, _)) => content = true,
            Some((Slot::DocumentId, _)) => document = true,
            Some((Slot::EventType, _)) => event_type = true,
            Some((Slot::ScoreName, _)) => score = true,
            Some((Slot::Error | Slot::ErrorType | Slot::ErrorMessage, _)) => error = true,
            _ => {}
        }
    }
    if role && content {
        EventKind::Chat
    } else if document && event_type {
        EventKind::Document
    } else if score {
        // A name without a value is a score still: refused with its reason, not attached.
        EventKind::Score
    } else if fill {
        EventKind::Fill
    } else if error || *meta.level() == Level::ERROR {
        EventKind::Error
    } else if attach >= *meta.level() {
        EventKind::Attach
    } else {
        EventKind::Ignore
    }
}
