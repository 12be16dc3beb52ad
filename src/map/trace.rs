//! A root span mapped to its trace's row: the start row at the span's start, and the finished
//! row (outcome, the trace's totals, metadata) at its close.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::config::{MapConfig, Scope};
use super::metadata::Metadata;
use super::span::{display_name, outcome};
use crate::model::fields::Slot;
use crate::model::money::money_in_range;
use crate::model::record::CapturedSpan;
use crate::model::rows::{PartRow, TraceRow};
use crate::model::sanitize::{TextLimits, clean_owned, clean_static, clean_text};
use crate::model::values::millis_between;

/// The trace row of a root span (a start when `ended_at` is `None`).
fn root_row(
    l: &TextLimits,
    span: &CapturedSpan,
    scope: &Scope<'_>,
    ended_at: Option<DateTime<Utc>>,
) -> TraceRow {
    let name = span.head.name;
    let operation_type = match span.fields.text(Slot::OperationType) {
        Some(s) => Cow::Owned(clean_text(&s.to_ascii_lowercase(), l.label)),
        None => clean_static(name, l.label),
    };
    let started_at = DateTime::<Utc>::from(span.head.started_at);
    TraceRow {
        id: span.head.trace_id,
        name: display_name(l, span),
        operation_type,
        user_id: scope.user_id,
        session_id: scope.session_id.map(|s| clean_text(s, l.label)),
        kb_id: scope.kb_id,
        started_at,
        ended_at,
        duration_ms: ended_at.map(|e| millis_between(started_at, e)),
        metadata: Value::Object(Map::new()),
        // A root span's start row is always queued.
        start_sent: ended_at.is_some(),
        ..TraceRow::default()
    }
}

/// The start row of a root span's trace, in progress.
pub(crate) fn root_start(l: &TextLimits, span: &CapturedSpan, scope: &Scope<'_>) -> TraceRow {
    root_row(l, span, scope, None)
}

/// The trace's token and cost totals at its end: prompt, completion, cost in micro-dollars.
pub(crate) type Totals = (i64, i64, Option<i64>);

/// The finished row of a root span's trace, closed now (while its thread panics, when
/// `panicking`), with the trace's `totals`.
pub(crate) fn root_end(
    config: &MapConfig,
    span: &CapturedSpan,
    scope: &Scope<'_>,
    (prompt, completion, cost): Totals,
    panicking: bool,
) -> TraceRow {
    let l = &config.limits;
    let mut row = root_row(l, span, scope, Some(Utc::now()));
    let rare = span.rare.as_deref();
    let (status, error_type, error_message) =
        outcome(rare.and_then(|r| r.error.as_ref()), &span.fields, panicking);
    row.status = status;
    row.error_type = error_type.map(|s| clean_text(&s, l.label));
    row.error_message = error_message.map(|s| clean_owned(s, l.error_message));
    row.prompt_tokens = Some(prompt);
    row.completion_tokens = Some(completion);
    row.total_tokens = Some(prompt.saturating_add(completion));
    // A sum of valid costs can still exceed numeric(10,6): stored NULL then.
    row.total_cost_micros = cost.and_then(money_in_range);
    let mut metadata = Metadata {
        limits: l,
        callsite: span.head.name,
        otel_transport_fields: config.otel_transport_fields,
        fields: &span.fields,
        events: rare.map_or(&[][..], |r| &r.events[..]),
        events_dropped: rare.map_or(0, |r| r.events_dropped),
    }
    .to_map();
    // The root's own typed fields have no column in `traces`: kept in metadata.
    if let Some(model) = span.fields.text(Slot::Model) {
        metadata.insert(
            "model".to_owned(),
            Value::String(clean_text(&model, l.label)),
        );
    }
    row.metadata = Value::Object(metadata);
    row
}

/// One process's share of a distributed trace's usage: `totals` as the trace's running
/// totals give them (prompt and completion tokens, cost in micro-dollars where any was given).
pub(crate) fn part(
    trace_id: Uuid,
    part_id: Uuid,
    started_at: DateTime<Utc>,
    (prompt, completion, cost): (i64, i64, Option<i64>),
) -> PartRow {
    PartRow {
        trace_id,
        part_id,
        started_at,
        prompt_tokens: prompt.max(0),
        completion_tokens: completion.max(0),
        cost_micros: cost.map(|c| c.max(0)),
    }
}

/// The origin's share of a trace that crossed processes, from its finished row (the totals
/// it would have stored alone), and the row marked to take the sum of every share instead.
pub(crate) fn origin_part(row: &mut TraceRow) -> PartRow {
    row.recount = true;
    let own = (
        row.prompt_tokens.unwrap_or(0),
        row.completion_tokens.unwrap_or(0),
        row.total_cost_micros,
    );
    part(row.id, row.id, row.started_at, own)
}
