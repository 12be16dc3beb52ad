//! What an event is for the layer (a chat message, a document event, a span's error, an event
//! to attach, or nothing), judged from its level and field names before any value is
//! formatted.

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level};

use crate::model::fields::{Slot, slot_of};

/// What an event is, judged from its level and field names alone, before any value is
/// formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventKind {
    Chat,
    Document,
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
    let mut error = false;
    for field in meta.fields() {
        match slot_of(field.name()) {
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
