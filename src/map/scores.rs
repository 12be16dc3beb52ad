//! Scores to rows: the provider's [`Score`] and a score event (`score_name` and `score_value`
//! inside a span). Both are refused with a reason, never stored half right: a score without a
//! name, with a NaN or infinite value or of an unknown source means nothing to aggregate.

use chrono::Utc;

use super::config::Scope;
use super::metadata::parse_uuid;
use crate::model::fields::{Fields, Slot, Val};
use crate::model::ids::v7_now;
use crate::model::kinds::{ScoreDataType, ScoreSource};
use crate::model::rows::ScoreRow;
use crate::model::sanitize::{TextLimits, clean_opt, clean_text};
use crate::model::score::{Score, ScoreValue};

/// Why a score is refused: counted in `Stats::rejected`, logged by the writer.
const EMPTY_NAME: &str = "score: the name is empty";
const NOT_FINITE: &str = "score: the numeric value is NaN or infinite";

/// The row of a score given to the provider.
pub(crate) fn score_row(l: &TextLimits, score: Score) -> Result<ScoreRow, &'static str> {
    let mut row = row(l, &score.name, score.value, score.source)?;
    row.trace_id = score.trace_id.as_uuid();
    row.span_id = score.span_id.map(|s| s.as_uuid());
    row.message_id = score.message_id;
    row.comment = clean_opt(score.comment, l.content);
    row.author = clean_opt(score.author, l.label);
    Ok(row)
}

/// The row of a score event (one with `score_name`) in `scope`: it judges the event's span
/// (its trace, directly in the root span), or the message of `score_message_id`.
pub(crate) fn score_event(
    l: &TextLimits,
    fields: &Fields,
    scope: &Scope<'_>,
) -> Result<ScoreRow, &'static str> {
    let value = match fields.get(Slot::ScoreValue) {
        None => return Err("score event: no score_value"),
        Some(Val::B(b)) => ScoreValue::Bool(*b),
        Some(Val::I(i)) => ScoreValue::Numeric(*i as f64),
        Some(Val::U(u)) => ScoreValue::Numeric(*u as f64),
        Some(Val::F(f)) => ScoreValue::Numeric(*f),
        // Text is a label, but for the two words of a boolean: a value recorded with `%` or `?`
        // from a `bool` arrives as text.
        Some(Val::S(s)) => match s.trim() {
            t if t.eq_ignore_ascii_case("true") => ScoreValue::Bool(true),
            t if t.eq_ignore_ascii_case("false") => ScoreValue::Bool(false),
            _ => ScoreValue::Categorical(s.to_string()),
        },
    };
    let source = match fields.get(Slot::ScoreSource) {
        None => ScoreSource::Api,
        Some(v) => ScoreSource::parse(v.to_text().trim())
            .ok_or("score event: score_source is not user, model, rule or api")?,
    };
    let message_id = match fields.get(Slot::ScoreMessageId) {
        None => None,
        Some(v) => Some(parse_uuid(v).ok_or("score event: score_message_id is not a UUID")?),
    };
    let name = fields.text(Slot::ScoreName).unwrap_or_default();
    let mut row = row(l, &name, value, source)?;
    row.trace_id = scope.trace_id;
    row.span_id = scope.span_id;
    row.message_id = message_id;
    row.comment = clean_opt(fields.text(Slot::ScoreComment), l.content);
    row.author = clean_opt(fields.text(Slot::ScoreAuthor), l.label);
    Ok(row)
}

/// A row with its name, value and source; the ids, comment and author to be filled.
fn row(
    l: &TextLimits,
    name: &str,
    value: ScoreValue,
    source: ScoreSource,
) -> Result<ScoreRow, &'static str> {
    // Trimmed after cleaning: a name of blanks and NULs is empty too.
    let name = clean_text(name, l.label).trim().to_owned();
    if name.is_empty() {
        return Err(EMPTY_NAME);
    }
    let (data_type, value_numeric, value_bool, value_text) = match value {
        ScoreValue::Numeric(x) if !x.is_finite() => return Err(NOT_FINITE),
        ScoreValue::Numeric(x) => (ScoreDataType::Numeric, Some(x), None, None),
        ScoreValue::Bool(b) => (ScoreDataType::Boolean, None, Some(b), None),
        ScoreValue::Categorical(s) => (
            ScoreDataType::Categorical,
            None,
            None,
            Some(clean_text(&s, l.label)),
        ),
    };
    Ok(ScoreRow {
        id: v7_now(),
        trace_id: uuid::Uuid::nil(),
        span_id: None,
        message_id: None,
        name,
        data_type,
        value_numeric,
        value_bool,
        value_text,
        comment: None,
        source,
        author: None,
        created_at: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::TraceId;

    fn scope() -> Scope<'static> {
        Scope {
            trace_id: uuid::Uuid::now_v7(),
            span_id: Some(uuid::Uuid::now_v7()),
            user_id: None,
            session_id: None,
            kb_id: None,
        }
    }

    fn event(value: Val) -> Fields {
        let mut f = Fields::default();
        f.put("score_name", Val::S("thumbs".into()));
        f.put("score_value", value);
        f
    }

    #[test]
    fn an_event_value_is_boolean_numeric_or_categorical_by_its_kind() {
        let l = TextLimits::default();
        let kind = |v| {
            let r = score_event(&l, &event(v), &scope()).unwrap();
            (r.data_type, r.value_numeric, r.value_bool, r.value_text)
        };
        use ScoreDataType::*;
        assert_eq!(kind(Val::B(false)), (Boolean, None, Some(false), None));
        assert_eq!(
            kind(Val::S(" TRUE ".into())),
            (Boolean, None, Some(true), None)
        );
        assert_eq!(kind(Val::I(-1)), (Numeric, Some(-1.0), None, None));
        assert_eq!(kind(Val::U(5)), (Numeric, Some(5.0), None, None));
        assert_eq!(kind(Val::F(0.25)), (Numeric, Some(0.25), None, None));
        // A number as text stays a label: record numbers as numbers.
        assert_eq!(
            kind(Val::S("0.8".into())),
            (Categorical, None, None, Some("0.8".into()))
        );
    }

    #[test]
    fn nan_infinite_nameless_and_unknown_source_scores_are_refused() {
        let l = TextLimits::default();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = Score::new(TraceId::new(), "x", ScoreValue::Numeric(x));
            assert_eq!(score_row(&l, s), Err(NOT_FINITE));
            assert_eq!(
                score_event(&l, &event(Val::F(x)), &scope()).map(|_| ()),
                Err(NOT_FINITE)
            );
        }
        for name in ["", " \0 ", "\0"] {
            let s = Score::new(TraceId::new(), name, ScoreValue::Bool(true));
            assert_eq!(score_row(&l, s), Err(EMPTY_NAME));
        }
        let mut f = event(Val::B(true));
        f.put("score_source", Val::S("a-robot".into()));
        assert!(score_event(&l, &f, &scope()).is_err());
        let mut f = event(Val::B(true));
        f.put("score_message_id", Val::S("not a uuid".into()));
        assert!(score_event(&l, &f, &scope()).is_err());
    }
}
