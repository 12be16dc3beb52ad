//! A span's `metadata`: the fields without a column, the user and kb ids that are not UUIDs,
//! the callsite's name when `otel.name` renamed the span, a request's system instructions and
//! tool definitions (cut to a preview's length), the attached events and the count of events
//! left out. Prompts and answers are not kept here: they are the previews.
//!
//! One construction ([`Metadata::entries`]) decides what goes under which key; two emitters
//! give it as JSON text for `COPY` (the writer's path, no JSON value built) or as a
//! [`Value`] (a trace's row, a span row the privacy hook sees).

use std::borrow::Cow;

use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::content::is_flattened_message;
use super::jsonb_text;
use crate::model::fields::{Fields, Slot, Val};
use crate::model::sanitize::{TextLimits, clean_borrowed, clean_static};

/// What a span's metadata is made of, borrowed from its captured record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metadata<'a> {
    /// The text limits keys and values are cut to.
    pub limits: &'a TextLimits,
    /// The callsite's name, kept as `callsite_name` when `otel.name` gave the row its name.
    pub callsite: &'static str,
    /// Whether `otel.kind`, `server.address` and `server.port` are kept.
    pub otel_transport_fields: bool,
    /// The span's fields as captured.
    pub fields: &'a Fields,
    /// Events attached to the span, as JSON (cleaned when attached).
    pub events: &'a [Value],
    /// Events past the per-span limit, counted only.
    pub events_dropped: u32,
}

/// A key: a field's name, or a name cut to a label's length (an index into the cut names).
enum Key {
    Name(&'static str),
    Cut(usize),
}

/// What goes under one key.
enum Item<'a> {
    /// A field's value, and the most characters it keeps.
    Field(&'a Val, usize),
    /// The callsite's name.
    Callsite,
    Events,
    EventsDropped,
}

/// The entries of one metadata object, in the order `jsonb` stores its keys.
struct Entries<'a> {
    /// Names longer than a label, cut (rare): the keys that are not static point into these.
    cut: Vec<String>,
    items: SmallVec<[(Key, Item<'a>); 8]>,
}

impl Entries<'_> {
    fn key<'k>(&'k self, key: &Key) -> &'k str {
        match *key {
            Key::Name(name) => name,
            Key::Cut(i) => self.cut.get(i).map_or("", String::as_str),
        }
    }
}

/// Whether a field's value parses as a UUID (an id column can hold it).
pub(crate) fn parse_uuid(v: &Val) -> Option<uuid::Uuid> {
    v.as_str()
        .and_then(|s| uuid::Uuid::try_parse(s.trim()).ok())
}

impl<'a> Metadata<'a> {
    /// The keys and what goes under each: every field without a column under its own name,
    /// then the ids without a column, the events and their overflow count. A later key wins
    /// over an earlier one with the same name, in `jsonb` as in a map; the keys are sorted in
    /// `jsonb`'s order and kept once each, so the server's sort of them is a single check.
    fn entries(self) -> Entries<'a> {
        let l = self.limits;
        let mut cut: Vec<String> = Vec::new();
        let mut items: SmallVec<[(Key, Item<'a>); 8]> = SmallVec::new();
        for (name, v) in self.fields.extras() {
            // OpenInference's flattened messages became the previews.
            if name.starts_with("llm.") && is_flattened_message(name) {
                continue;
            }
            // The OpenTelemetry bridge's transport details: kept only when asked for.
            if !self.otel_transport_fields && is_transport_field(name) {
                continue;
            }
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
            // An id that is not a UUID has no column to go to: kept as given.
            if let Some(v) = self.fields.get(slot).filter(|v| parse_uuid(v).is_none()) {
                items.push((Key::Name(name), Item::Field(v, l.label)));
            }
        }
        for (slot, name) in [
            (Slot::SystemInstructions, "gen_ai.system_instructions"),
            (Slot::ToolDefinitions, "gen_ai.tool.definitions"),
        ] {
            if let Some(v) = self.fields.get(slot) {
                items.push((Key::Name(name), Item::Field(v, l.preview)));
            }
        }
        // A score event's fields recorded on a span have no span column: kept as before they
        // were well-known names.
        for (slot, name) in [
            (Slot::ScoreName, "score_name"),
            (Slot::ScoreValue, "score_value"),
            (Slot::ScoreComment, "score_comment"),
            (Slot::ScoreSource, "score_source"),
            (Slot::ScoreAuthor, "score_author"),
            (Slot::ScoreMessageId, "score_message_id"),
        ] {
            if let Some(v) = self.fields.get(slot) {
                items.push((Key::Name(name), Item::Field(v, l.content)));
            }
        }
        if self.fields.has(Slot::OtelName) {
            items.push((Key::Name("callsite_name"), Item::Callsite));
        }
        if !self.events.is_empty() {
            items.push((Key::Name("events"), Item::Events));
        }
        if self.events_dropped > 0 {
            items.push((Key::Name("events_dropped"), Item::EventsDropped));
        }
        jsonb_text::sort_keys(&mut items, |(k, _)| match *k {
            Key::Name(name) => name,
            Key::Cut(i) => cut.get(i).map_or("", String::as_str),
        });
        Entries { cut, items }
    }

    /// Writes the metadata as JSON text.
    pub(crate) fn write_json(self, buf: &mut Vec<u8>) {
        let entries = self.entries();
        buf.push(b'{');
        for (i, (key, item)) in entries.items.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            jsonb_text::write_str(buf, entries.key(key));
            buf.push(b':');
            // Writing into a Vec cannot fail.
            match item {
                Item::Field(v, max_chars) => write_val(buf, v, *max_chars),
                Item::Callsite => {
                    jsonb_text::write_str(buf, &clean_static(self.callsite, self.limits.label));
                }
                Item::Events => {
                    let _ = serde_json::to_writer(&mut *buf, self.events);
                }
                Item::EventsDropped => {
                    let _ = serde_json::to_writer(&mut *buf, &self.events_dropped);
                }
            }
        }
        buf.push(b'}');
    }

    /// The metadata as a JSON object.
    pub(crate) fn to_map(self) -> Map<String, Value> {
        let entries = self.entries();
        let mut m = Map::new();
        for (key, item) in &entries.items {
            let v = match item {
                Item::Field(v, max_chars) => (*v).clone().into_clean_json(*max_chars),
                Item::Callsite => {
                    Value::String(clean_static(self.callsite, self.limits.label).into_owned())
                }
                Item::Events => Value::Array(self.events.to_vec()),
                Item::EventsDropped => Value::from(self.events_dropped),
            };
            m.insert(entries.key(key).to_owned(), v);
        }
        m
    }
}

/// Whether a field is one of the OpenTelemetry bridge's transport details.
fn is_transport_field(name: &str) -> bool {
    matches!(name, "otel.kind" | "server.address" | "server.port")
}

/// Writes a field's value as [`Val::into_clean_json`] would have it, without building a value
/// or a string first.
fn write_val(buf: &mut Vec<u8>, v: &Val, max_chars: usize) {
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

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
