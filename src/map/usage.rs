//! A span's token usage and cost from its fields: the token slots, or a usage object in a
//! string (`langfuse.usage`, in its common spellings); a given cost (a number, numeric text,
//! or a cost object with a `total`), else one computed from the price table.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde_json::Value;

use super::config::MapConfig;
use crate::model::fields::{Fields, Slot, Val};
use crate::model::money::cost_to_micros;
use crate::model::values::count;

/// Names of the prompt-token counts a usage object may carry.
const PROMPT_KEYS: &[&str] = &[
    "prompt_tokens",
    "input_tokens",
    "input",
    "promptTokens",
    "inputTokens",
    "prompt",
];
/// Names of the completion-token counts a usage object may carry.
const COMPLETION_KEYS: &[&str] = &[
    "completion_tokens",
    "output_tokens",
    "output",
    "completionTokens",
    "outputTokens",
    "completion",
];
/// Names of the cached prompt-token counts a span or a usage object may carry.
const CACHED_FIELDS: &[&str] = &[
    "cached_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "llm.token_count.prompt_details.cache_read",
];
const CACHED_KEYS: &[&str] = &[
    "cached_tokens",
    "input_cached_tokens",
    "cache_read_input_tokens",
    "cache_read",
];

/// Prompt, completion and cached prompt tokens of a usage object in text.
fn usage_json(v: &Val) -> (Option<i64>, Option<i64>, Option<i64>) {
    let Some(Value::Object(m)) = v.as_str().and_then(|s| serde_json::from_str(s).ok()) else {
        return (None, None, None);
    };
    let first = |keys: &[&str], within: &serde_json::Map<String, Value>| {
        keys.iter().find_map(|k| {
            within.get(*k).and_then(|v| match v {
                Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
        })
    };
    let cached = first(CACHED_KEYS, &m).or_else(|| {
        ["prompt_tokens_details", "input_tokens_details"]
            .iter()
            .find_map(|k| match m.get(*k) {
                Some(Value::Object(d)) => first(CACHED_KEYS, d),
                _ => None,
            })
    });
    (first(PROMPT_KEYS, &m), first(COMPLETION_KEYS, &m), cached)
}

/// A cost the span gives: a number, numeric text, or a cost object (`{"total": ..}`, or the
/// sum of its parts).
fn given_cost(v: &Val) -> Option<Decimal> {
    match v {
        Val::S(s) => {
            let s = s.trim();
            if let Ok(d) = s.parse::<Decimal>() {
                return Some(d);
            }
            let Ok(Value::Object(m)) = serde_json::from_str::<Value>(s) else {
                return None;
            };
            let number = |v: &Value| match v {
                Value::Number(n) => Decimal::try_from(n.as_f64()?).ok(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match m.get("total") {
                Some(total) => number(total),
                None => m
                    .values()
                    .map(number)
                    .try_fold(Decimal::ZERO, |sum, x| sum.checked_add(x?)),
            }
        }
        other => other.as_f64().and_then(|x| Decimal::try_from(x).ok()),
    }
}

/// Tokens and cost (micro-dollars, with its source) a span's fields report.
pub(crate) fn usage(
    config: &MapConfig,
    f: &Fields,
) -> (Option<i64>, Option<i64>, Option<i64>, Option<&'static str>) {
    let mut prompt = count(f.i64(Slot::PromptTokens));
    let mut completion = count(f.i64(Slot::CompletionTokens));
    let mut cached = None;
    if let Some(v) = f.get(Slot::UsageJson) {
        let (p, c, k) = usage_json(v);
        prompt = prompt.or(count(p));
        completion = completion.or(count(c));
        cached = count(k);
    }
    if let Some(micros) = f
        .get(Slot::CostUsd)
        .and_then(given_cost)
        .and_then(cost_to_micros)
    {
        return (prompt, completion, Some(micros), Some("given"));
    }
    // No tokens: nothing to price (and no model name to copy out).
    if prompt.is_none() && completion.is_none() {
        return (prompt, completion, None, None);
    }
    let cached = cached
        .or_else(|| {
            CACHED_FIELDS
                .iter()
                .find_map(|name| f.extra(name).and_then(Val::as_i64))
        })
        .unwrap_or(0);
    // The model borrowed where it is text (this runs on the caller's thread for the totals).
    let computed = f.get(Slot::Model).and_then(|v| {
        let model = v
            .as_str()
            .map_or_else(|| Cow::Owned(v.to_text()), Cow::Borrowed);
        config
            .prices
            .cost_with_cached(&model, prompt.unwrap_or(0), cached, completion.unwrap_or(0))
    });
    match computed.and_then(cost_to_micros) {
        Some(micros) => (prompt, completion, Some(micros), Some("computed")),
        None => (prompt, completion, None, None),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::{given_cost, usage, usage_json};
    use crate::map::config::MapConfig;
    use crate::model::fields::{Fields, Val};

    fn s(text: &str) -> Val {
        Val::S(text.into())
    }

    #[test]
    fn usage_objects_in_their_common_spellings() {
        let cases = [
            (
                r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}"#,
                (Some(10), Some(5), None),
            ),
            (
                r#"{"input":7,"output":3,"total":10,"input_cached_tokens":2}"#,
                (Some(7), Some(3), Some(2)),
            ),
            (
                r#"{"promptTokens":"4","completionTokens":1}"#,
                (Some(4), Some(1), None),
            ),
            (
                r#"{"input_tokens":9,"output_tokens":2,"input_tokens_details":{"cached_tokens":6}}"#,
                (Some(9), Some(2), Some(6)),
            ),
            (r#"{"prompt_tokens":1.0}"#, (Some(1), None, None)),
            ("not json", (None, None, None)),
            ("[1,2]", (None, None, None)),
        ];
        for (text, want) in cases {
            assert_eq!(usage_json(&s(text)), want, "{text}");
        }
        assert_eq!(usage_json(&Val::I(3)), (None, None, None));
    }

    #[test]
    fn given_costs_are_numbers_text_or_cost_objects() {
        assert_eq!(given_cost(&s("0.0125")), Some(Decimal::new(125, 4)));
        assert_eq!(
            given_cost(&s(r#"{"input":0.5,"output":"0.25","total":1}"#)),
            Some(Decimal::ONE)
        );
        assert_eq!(
            given_cost(&s(r#"{"input":0.5,"output":"0.25"}"#)),
            Some(Decimal::new(75, 2))
        );
        assert_eq!(given_cost(&s(r#"{"input":"x"}"#)), None);
        assert_eq!(given_cost(&s("free")), None);
        assert_eq!(given_cost(&Val::F(0.5)), Some(Decimal::new(5, 1)));
    }

    #[test]
    fn a_langfuse_usage_string_is_priced_with_its_cached_tokens() {
        let mut f = Fields::default();
        f.put("langfuse.model", s("gpt-4o"));
        f.put(
            "langfuse.usage",
            s(r#"{"prompt_tokens":1000000,"completion_tokens":0,"cached_tokens":400000}"#),
        );
        let (p, c, cost, source) = usage(&MapConfig::default(), &f);
        assert_eq!((p, c, source), (Some(1_000_000), Some(0), Some("computed")));
        // 600K × $2.50 + 400K × $1.25 per million.
        assert_eq!(cost, Some(2_000_000));
        // The OTel cached count on the span itself counts too.
        let mut g = Fields::default();
        g.put("gen_ai.request.model", s("gpt-4o"));
        g.put("gen_ai.usage.input_tokens", Val::I(1_000_000));
        g.put("gen_ai.usage.cache_read.input_tokens", Val::I(1_000_000));
        assert_eq!(usage(&MapConfig::default(), &g).2, Some(1_250_000));
    }
}
