//! What content is captured, and the redaction hook applied to every record before it is
//! queued (on the caller's thread, so nothing unredacted ever sits in memory for the writer or
//! reaches the database).

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::model::record::Record;
use crate::model::sanitize::{TextLimits, clean_owned};

/// Stored in `chat_messages.content` when content capture is off.
pub const NOT_CAPTURED: &str = "[not captured]";

/// The kind of text a redaction hook is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TextKind {
    /// A chat message's content.
    ChatContent,
    /// A span's input preview.
    InputPreview,
    /// A span's output preview.
    OutputPreview,
    /// A retrieval's query text.
    QueryText,
    /// An error message of a trace, span or document event.
    ErrorMessage,
    /// A string anywhere in `metadata`, `sources` or `citations`.
    Json,
    /// A score's comment (a user's feedback in their own words).
    ScoreComment,
}

/// A redaction hook: called with each piece of text a record carries, it may change it in place
/// (mask an email address, drop a secret). It runs on the caller's thread before the record is
/// queued, so keep it fast; a panic in it is caught and the text replaced by a marker.
pub type Redactor = Arc<dyn Fn(TextKind, &mut String) + Send + Sync>;

/// Privacy settings of a handle.
#[derive(Clone, Default)]
pub(crate) struct Privacy {
    /// `false`: chat content, previews, query text, source excerpts and score comments are not
    /// stored.
    pub skip_content: bool,
    pub redactor: Option<Redactor>,
}

impl fmt::Debug for Privacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Privacy")
            .field("capture_content", &!self.skip_content)
            .field("redactor", &self.redactor.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl Privacy {
    /// Whether `apply` has anything to do (the common case has nothing: no cost).
    pub fn is_active(&self) -> bool {
        self.skip_content || self.redactor.is_some()
    }

    /// Applies the settings to a record about to be queued.
    pub fn apply(&self, record: &mut Record, limits: &TextLimits) {
        if self.skip_content {
            drop_content(record);
        }
        if let Some(r) = &self.redactor {
            redact(record, r, limits);
        }
    }
}

fn drop_content(record: &mut Record) {
    match record {
        Record::Span(s) => {
            s.input_preview = None;
            s.output_preview = None;
            s.query_text = None;
        }
        Record::Chat(c) => {
            c.content = NOT_CAPTURED.to_owned();
            if let Value::Array(sources) = &mut c.sources {
                for source in sources {
                    if let Value::Object(m) = source {
                        m.remove("excerpt");
                    }
                }
            }
        }
        // A score's comment is the user's (or judge's) own words about the content.
        Record::Score(s) => s.comment = None,
        // Mapped to a span row before the settings are applied (`Handle::push`).
        Record::Trace(_)
        | Record::Document(_)
        | Record::Closed(_)
        | Record::Llm(_)
        | Record::Part(_) => {}
    }
}

fn redact(record: &mut Record, r: &Redactor, limits: &TextLimits) {
    // What the hook returns is cleaned again: it must not bring back a NUL or a long text.
    let text = |kind, s: &mut String| {
        let call = std::panic::AssertUnwindSafe(|| r(kind, s));
        if std::panic::catch_unwind(call).is_err() {
            *s = "[redaction failed]".to_owned();
        }
        let max = match kind {
            TextKind::InputPreview | TextKind::OutputPreview => limits.preview,
            TextKind::ErrorMessage => limits.error_message,
            _ => limits.content,
        };
        *s = clean_owned(std::mem::take(s), max);
    };
    let opt = |kind, s: &mut Option<String>| {
        if let Some(s) = s {
            text(kind, s);
        }
    };
    match record {
        Record::Trace(t) => {
            opt(TextKind::ErrorMessage, &mut t.error_message);
            json(&mut t.metadata, &text);
        }
        Record::Span(s) => {
            opt(TextKind::InputPreview, &mut s.input_preview);
            opt(TextKind::OutputPreview, &mut s.output_preview);
            opt(TextKind::QueryText, &mut s.query_text);
            opt(TextKind::ErrorMessage, &mut s.error_message);
            json(&mut s.metadata, &text);
        }
        Record::Chat(c) => {
            text(TextKind::ChatContent, &mut c.content);
            json(&mut c.sources, &text);
            json(&mut c.citations, &text);
        }
        Record::Document(d) => {
            opt(TextKind::ErrorMessage, &mut d.error_message);
            json(&mut d.metadata, &text);
        }
        Record::Score(s) => opt(TextKind::ScoreComment, &mut s.comment),
        // Mapped to a span row before the settings are applied (`Handle::push`).
        Record::Closed(_) | Record::Llm(_) | Record::Part(_) => {}
    }
}

/// Calls `f` on every string value in a JSON value (bounded depth: values are sanitised
/// before they get here).
fn json(v: &mut Value, f: &dyn Fn(TextKind, &mut String)) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => f(TextKind::Json, s),
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(m) => stack.extend(m.values_mut()),
            _ => {}
        }
    }
}
