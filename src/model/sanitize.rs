//! Text and JSON sanitation applied before a record is queued.
//!
//! PostgreSQL `text` refuses NUL bytes and `jsonb` refuses `\u0000`; the spec caps error messages
//! at 1,000 characters and previews at 500. Everything here cuts at a character boundary, so a
//! 4-byte character at the limit is either kept whole or dropped whole.

use std::borrow::Cow;

use serde_json::Value;

/// Limits applied to text before it is stored. Counts are in characters (Unicode scalar values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// Longest error message kept (spec: 1,000).
    pub error_message: usize,
    /// Longest input or output preview kept (spec: 500).
    pub preview: usize,
    /// Longest chat message content, retrieval query text or other long text kept.
    pub content: usize,
    /// Longest name, model, type, session id or other short label kept. Labels are indexed:
    /// PostgreSQL refuses a btree entry over about 2,700 bytes, so keep this at or under 600
    /// (4 bytes a character at worst).
    pub label: usize,
    /// Deepest nesting kept in JSON metadata, sources and citations; deeper values become a
    /// string marker.
    pub json_depth: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self {
            error_message: 1_000,
            preview: 500,
            content: 1_000_000,
            label: 256,
            json_depth: 32,
        }
    }
}

/// Marker stored in place of JSON nested deeper than [`TextLimits::json_depth`].
pub const JSON_TOO_DEEP: &str = "[truncated: nested too deep]";

/// Cuts `s` to at most `max_chars` characters and removes NUL bytes.
///
/// Returns the input unchanged (no allocation) when it is already clean.
pub(crate) fn clean_text(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    for (kept, c) in s.chars().filter(|&c| c != '\0').enumerate() {
        if kept == max_chars {
            break;
        }
        out.push(c);
    }
    out
}

/// Cleans borrowed text: no copy when it is short and has no NUL.
pub(crate) fn clean_borrowed(s: &str, max_chars: usize) -> Cow<'_, str> {
    if s.len() <= max_chars && !s.as_bytes().contains(&0) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(clean_text(s, max_chars))
    }
}

/// Cleans an owned string in place when possible: no copy when it is short and has no NUL.
pub(crate) fn clean_owned(s: String, max_chars: usize) -> String {
    // Fast path: byte length bounds character count, so a short NUL-free string is already fine.
    if s.len() <= max_chars && !s.as_bytes().contains(&0) {
        return s;
    }
    clean_text(&s, max_chars)
}

/// Cleans text that usually lives forever (a span's name, a built-in label): borrowed, with no
/// copy, when it is already clean.
pub(crate) fn clean_static(s: &'static str, max_chars: usize) -> Cow<'static, str> {
    if s.len() <= max_chars && !s.as_bytes().contains(&0) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(clean_text(s, max_chars))
    }
}

/// Cleans borrowed-or-owned text, copying only when it must change.
pub(crate) fn clean_cow(s: Cow<'static, str>, max_chars: usize) -> Cow<'static, str> {
    match s {
        Cow::Borrowed(b) => clean_static(b, max_chars),
        Cow::Owned(o) => Cow::Owned(clean_owned(o, max_chars)),
    }
}

/// Cleans an optional owned string.
pub(crate) fn clean_opt(s: Option<String>, max_chars: usize) -> Option<String> {
    s.map(|s| clean_owned(s, max_chars))
}

/// Removes NUL characters from every string and key of a JSON value, cuts strings (not keys)
/// to [`TextLimits::content`] characters and keys to [`TextLimits::label`], and replaces values
/// nested deeper than [`TextLimits::json_depth`] with [`JSON_TOO_DEEP`].
///
/// Works without recursion, so a value nested 10,000 deep cannot overflow the stack; the value
/// it returns is at most `max_depth` deep, so dropping and serialising it is safe too.
pub(crate) fn clean_json(value: Value, limits: &TextLimits) -> Value {
    let max_depth = limits.json_depth;
    // A container being rebuilt, with the children still to visit.
    enum Frame {
        Array(Vec<Value>, std::vec::IntoIter<Value>),
        Object(
            serde_json::Map<String, Value>,
            serde_json::map::IntoIter,
            String,
        ),
    }
    let max_key = limits.label;
    let next_child = |stack: &mut [Frame]| -> Option<Value> {
        match stack.last_mut()? {
            Frame::Array(_, items) => items.next(),
            Frame::Object(_, entries, key) => {
                let (k, v) = entries.next()?;
                *key = clean_owned(k, max_key);
                Some(v)
            }
        }
    };

    fn pop_frame(stack: &mut Vec<Frame>) -> Value {
        match stack.pop() {
            Some(Frame::Array(out, _)) => Value::Array(out),
            Some(Frame::Object(out, _, _)) => Value::Object(out),
            None => Value::Null,
        }
    }

    let mut stack: Vec<Frame> = Vec::new();
    let mut next = value;
    loop {
        // Turn `next` into a finished value, or open a frame to rebuild it.
        let mut done = match next {
            Value::Array(_) | Value::Object(_) if stack.len() >= max_depth => {
                drop_deep(next);
                Some(Value::String(JSON_TOO_DEEP.to_owned()))
            }
            Value::Array(items) => {
                stack.push(Frame::Array(
                    Vec::with_capacity(items.len()),
                    items.into_iter(),
                ));
                None
            }
            Value::Object(map) => {
                stack.push(Frame::Object(
                    serde_json::Map::new(),
                    map.into_iter(),
                    String::new(),
                ));
                None
            }
            Value::String(s) => Some(Value::String(clean_owned(s, limits.content))),
            other => Some(other),
        };
        // Hand finished values to their parents until a parent has another child to visit.
        loop {
            if let Some(v) = done.take() {
                match stack.last_mut() {
                    None => return v,
                    Some(Frame::Array(out, _)) => out.push(v),
                    Some(Frame::Object(out, _, key)) => {
                        out.insert(std::mem::take(key), v);
                    }
                }
            }
            match next_child(&mut stack) {
                Some(child) => {
                    next = child;
                    break;
                }
                None => done = Some(pop_frame(&mut stack)),
            }
        }
    }
}

/// Drops a JSON value of any depth without recursion (serde_json's own drop recurses).
pub(crate) fn drop_deep(value: Value) {
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}
