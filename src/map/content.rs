//! The readable text of a prompt or an answer given as the conventions record it: the
//! OpenTelemetry GenAI message lists (`gen_ai.input.messages`, with `parts`), the older
//! `gen_ai.prompt` / `gen_ai.completion`, OpenInference's `input.value` and flattened
//! `llm.input_messages.*`, Langfuse's `langfuse.input` / `.output`, chat-completion style
//! `{"role", "content"}` lists: the last user message of an input, the text of an answer.

use serde_json::Value;

use crate::model::fields::{Fields, Val};

/// Which side of a call a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A prompt: the last message of the user is its readable text.
    Input,
    /// An answer: the last message (the model's) is its readable text.
    Output,
}

/// The readable text of a recorded prompt or answer. Text that is not JSON is taken as it
/// is; JSON is read as a message list, a message, or a string; JSON of another shape is kept
/// as its compact text.
pub(crate) fn readable(text: &str, side: Side) -> String {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('[') || trimmed.starts_with('{') || trimmed.starts_with('"')) {
        return text.to_owned();
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v) => of_value(&v, side).unwrap_or_else(|| text.to_owned()),
        Err(_) => text.to_owned(),
    }
}

/// The readable text of a parsed value, when it has one.
fn of_value(v: &Value, side: Side) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => of_messages(items, side),
        Value::Object(m) => {
            // A request or a response wrapping its messages.
            for key in ["messages", "input", "output", "choices"] {
                if let Some(Value::Array(items)) = m.get(key) {
                    return of_messages(items, side);
                }
            }
            if let Some(msg) = m.get("message") {
                return of_message(msg);
            }
            of_message(v)
        }
        _ => None,
    }
}

/// The chosen message of a list: the last user message of an input (the last message when
/// none is the user's), the last message of an output.
fn of_messages(items: &[Value], side: Side) -> Option<String> {
    let role = |m: &Value| {
        m.get("role")
            .or_else(|| m.get("message").and_then(|m| m.get("role")))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let chosen = match side {
        Side::Input => items
            .iter()
            .rev()
            .find(|m| matches!(role(m).as_deref(), Some("user" | "human")))
            .or_else(|| items.last()),
        Side::Output => items.last(),
    }?;
    // A `choices` entry holds its message.
    let chosen = chosen.get("message").unwrap_or(chosen);
    match chosen {
        Value::String(s) => Some(s.clone()),
        m => of_message(m),
    }
}

/// The text of one message: its `content` (a string, or a list of parts), its `parts`, its
/// `text`; tool calls are shown by name and arguments when there is no text.
fn of_message(m: &Value) -> Option<String> {
    let mut texts: Vec<String> = Vec::new();
    if let Some(content) = m.get("content") {
        match content {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(parts) => texts.extend(parts.iter().filter_map(part_text)),
            _ => {}
        }
    }
    if let Some(Value::Array(parts)) = m.get("parts") {
        texts.extend(parts.iter().filter_map(part_text));
    }
    if texts.is_empty()
        && let Some(Value::String(s)) = m.get("text")
    {
        texts.push(s.clone());
    }
    if texts.is_empty() {
        let calls = m
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| calls.iter().filter_map(tool_call_text).collect::<Vec<_>>())
            .unwrap_or_default();
        texts.extend(calls);
    }
    (!texts.is_empty()).then(|| texts.join("\n"))
}

/// The text of one part of a message: a text part's text; a tool call or its response shown
/// briefly; other parts (reasoning, images, files) left out: a preview shows the answer.
fn part_text(part: &Value) -> Option<String> {
    match part {
        Value::String(s) => Some(s.clone()),
        Value::Object(p) => {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or("text");
            match kind {
                "text" | "input_text" | "output_text" => p
                    .get("content")
                    .or_else(|| p.get("text"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                "tool_call" | "function_call" | "tool_use" => tool_call_text(part),
                "tool_call_response" | "tool_result" => p
                    .get("response")
                    .or_else(|| p.get("result"))
                    .or_else(|| p.get("content"))
                    .map(|r| match r {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `name(arguments)` of a tool call, in the shapes the conventions and the OpenAI API use.
fn tool_call_text(call: &Value) -> Option<String> {
    let f = call.get("function").unwrap_or(call);
    let name = f.get("name").and_then(Value::as_str)?;
    let args = f
        .get("arguments")
        .or_else(|| f.get("input"))
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    Some(format!("{name}({args})"))
}

/// The readable text of OpenInference's flattened messages
/// (`llm.input_messages.<i>.message.role` / `.content`), kept in metadata as fields of their
/// own: the last user message's content of an input, the last message's of an output.
pub(crate) fn flattened(fields: &Fields, side: Side) -> Option<String> {
    let prefix = match side {
        Side::Input => "llm.input_messages.",
        Side::Output => "llm.output_messages.",
    };
    let mut best: Option<(u32, bool, &Val)> = None;
    for (name, v) in fields.extras() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, "message.content")) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            continue;
        };
        let role_name = format!("{prefix}{index}.message.role");
        let is_user = fields
            .extra(&role_name)
            .and_then(Val::as_str)
            .is_some_and(|r| r.eq_ignore_ascii_case("user"));
        let better = match best {
            None => true,
            Some((i, user, _)) => match side {
                Side::Input => (is_user, index) > (user, i),
                Side::Output => index > i,
            },
        };
        if better {
            best = Some((index, is_user, v));
        }
    }
    best.map(|(_, _, v)| v.to_text())
}

/// Whether a metadata field is one of OpenInference's flattened messages, which become the
/// previews and are not kept twice.
pub(crate) fn is_flattened_message(name: &str) -> bool {
    name.starts_with("llm.input_messages.") || name.starts_with("llm.output_messages.")
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
