//! A score as the provider is given it: what it judges (a trace, and optionally one of its
//! spans or chat messages), its name, value, comment, source and author.

use uuid::Uuid;

use super::ids::{SpanId, TraceId};
use super::kinds::ScoreSource;

/// A score's value: a number, a yes or no, or a label.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreValue {
    /// A number (a grade from 0 to 1, a rating from 1 to 5, -1 or +1). NaN and infinities are
    /// refused and counted in [`Stats::rejected`](crate::Stats::rejected).
    Numeric(f64),
    /// A yes or no (a thumbs-up is `true`).
    Bool(bool),
    /// A label (`"relevant"`, `"off-topic"`), cut to [`TextLimits::label`](crate::TextLimits::label).
    Categorical(String),
}

/// A score of a trace, a span or a chat message, for
/// [`ObservabilityProvider::log_score`](crate::ObservabilityProvider::log_score).
///
/// It needs only the trace's id: the trace may have ended hours ago, in another process, or
/// not be stored (yet) at all; the score is kept either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The trace judged (or the trace of the span or message judged).
    pub trace_id: TraceId,
    /// The span judged, if the score is about one span of the trace.
    pub span_id: Option<SpanId>,
    /// The chat message judged (its `chat_messages.id`), if the score is about one.
    pub message_id: Option<Uuid>,
    /// The score's name (`helpfulness`, `thumbs`, `faithfulness`), cut to the label limit;
    /// an empty name is refused.
    pub name: String,
    /// The value.
    pub value: ScoreValue,
    /// A comment (the user's words, the judge's reasoning), cut to the content limit.
    pub comment: Option<String>,
    /// Who or what gave it.
    pub source: ScoreSource,
    /// Who gave it (a user id, a judge model's name), cut to the label limit.
    pub author: Option<String>,
}

impl Score {
    /// A score of the trace `trace_id` from [`ScoreSource::Api`], without comment or author.
    pub fn new(trace_id: TraceId, name: impl Into<String>, value: ScoreValue) -> Self {
        Self {
            trace_id,
            span_id: None,
            message_id: None,
            name: name.into(),
            value,
            comment: None,
            source: ScoreSource::Api,
            author: None,
        }
    }
}
