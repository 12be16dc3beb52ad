//! Values as page text: times, durations, counts, costs, ids; long text and JSON cut to a
//! size a page can hold, with a link to the whole value.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rust_decimal::Decimal;
use serde_json::Value;
use tracing_postgres::Uuid;

use super::error::WebError;
use crate::text;

/// Characters of one value shown inline; the rest is behind a link.
pub const INLINE_CHARS: usize = 4_000;
/// Characters of a chat message shown inline.
pub const MESSAGE_CHARS: usize = 20_000;
/// JSON nesting shown inline; deeper levels are elided.
const JSON_DEPTH: usize = 40;

/// `2026-12-07 10:42:03.125`, in UTC.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A duration, or `—`.
pub fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => text::fmt_ms(v),
        _ => "—".to_owned(),
    }
}

/// A count grouped by thousands, or `—`.
pub fn num(v: Option<i64>) -> String {
    v.map_or_else(|| "—".to_owned(), text::group)
}

/// A cost in US dollars, or `—`.
pub fn cost(v: Option<Decimal>) -> String {
    v.map_or_else(|| "—".to_owned(), |c| format!("${}", c.normalize()))
}

/// A trace, span or document id: a UUID or 32 hex digits (W3C form).
pub fn parse_id(s: &str) -> Result<Uuid, WebError> {
    Uuid::parse_str(s.trim())
        .map_err(|_| WebError::BadRequest("not an id: expected a UUID or 32 hex digits".to_owned()))
}

/// Text made safe for one path segment of a URL.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// `s` cut to at most `max` characters, and whether anything was cut.
pub fn cut(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

/// A long value as preformatted text, cut to `max` characters; when cut, how much is left
/// out and a link to the whole value (`full`, when there is one).
pub fn long_text(s: &str, max: usize, full: Option<&str>) -> Markup {
    let (shown, was_cut) = cut(s, max);
    html! {
        pre.value { (shown) @if was_cut { "…" } }
        @if was_cut {
            p.cut {
                "Cut: " (text::group(i64::try_from(s.chars().count()).unwrap_or(i64::MAX)))
                " characters in all. "
                @if let Some(href) = full {
                    a.full href=(href) { "Show the whole value" }
                }
            }
        }
    }
}

/// `v` as indented JSON, with levels deeper than the page shows elided and the text cut at
/// `max` bytes; and whether anything was left out.
pub fn json(v: &Value, max: usize) -> (String, bool) {
    let mut out = String::new();
    let mut elided = false;
    write_json(v, 0, &mut out, max, &mut elided);
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        elided = true;
    }
    (out, elided)
}

fn write_json(v: &Value, depth: usize, out: &mut String, max: usize, elided: &mut bool) {
    if out.len() > max {
        *elided = true;
        return;
    }
    let pad = |out: &mut String, d: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", d.min(JSON_DEPTH)));
    };
    match v {
        Value::Array(items) if depth >= JSON_DEPTH && !items.is_empty() => {
            out.push_str("[…]");
            *elided = true;
        }
        Value::Object(map) if depth >= JSON_DEPTH && !map.is_empty() => {
            out.push_str("{…}");
            *elided = true;
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write_json(item, depth + 1, out, max, elided);
                if out.len() > max {
                    return;
                }
            }
            pad(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_json(item, depth + 1, out, max, elided);
                if out.len() > max {
                    return;
                }
            }
            pad(out, depth);
            out.push('}');
        }
        // Scalars and empty containers: serde_json's own text, quotes escaped.
        v => out.push_str(&v.to_string()),
    }
}

/// JSON shown as a block, with a link to the whole value when something was left out.
pub fn json_block(v: &Value, full: Option<&str>) -> Markup {
    let (text, elided) = json(v, INLINE_CHARS * 4);
    html! {
        pre.value.json { (text) }
        @if elided {
            p.cut {
                "Deeper levels or the rest left out. "
                @if let Some(href) = full { a.full href=(href) { "Show the whole value" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(cut("é😀ab", 2), ("é😀", true));
        assert_eq!(cut("ab", 2), ("ab", false));
    }

    #[test]
    fn deep_json_is_elided_and_long_json_cut() {
        let mut v = serde_json::json!("leaf");
        for _ in 0..100 {
            v = serde_json::json!({ "k": v });
        }
        let (s, elided) = json(&v, 1_000_000);
        assert!(elided && s.contains("{…}") && !s.contains("leaf"));
        let long = serde_json::json!({ "a": "x".repeat(10_000) });
        let (s, elided) = json(&long, 100);
        assert!(elided && s.len() <= 100);
        let (s, elided) = json(&serde_json::json!({"a": [1, "<b>"]}), 100);
        assert!(!elided);
        assert_eq!(s, "{\n  \"a\": [\n    1,\n    \"<b>\"\n  ]\n}");
    }
}
