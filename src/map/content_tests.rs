use super::{Side, flattened, readable};
use crate::model::fields::{Fields, Val};

#[test]
fn otel_genai_message_lists_give_the_last_user_message_and_the_answer() {
    let input = r#"[{"role":"system","parts":[{"type":"text","content":"Be brief."}]},
        {"role":"user","parts":[{"type":"text","content":"first question"}]},
        {"role":"assistant","parts":[{"type":"text","content":"first answer"}]},
        {"role":"user","parts":[{"type":"text","content":"What is RAG?"},{"type":"blob","mime_type":"image/png"}]}]"#;
    assert_eq!(readable(input, Side::Input), "What is RAG?");
    let output = r#"[{"role":"assistant","parts":[{"type":"reasoning","content":"thinking"},
        {"type":"text","content":"Retrieval-augmented generation."}],"finish_reason":"stop"}]"#;
    assert_eq!(
        readable(output, Side::Output),
        "Retrieval-augmented generation."
    );
}

#[test]
fn chat_completion_shapes_and_tool_calls_are_read() {
    let input = r#"[{"role":"user","content":"hello"},{"role":"assistant","content":"hi"}]"#;
    assert_eq!(readable(input, Side::Input), "hello");
    let parts = r#"[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]"#;
    assert_eq!(readable(parts, Side::Input), "a");
    let calls = r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"get_weather","arguments":{"city":"Oslo"}}]}]"#;
    assert_eq!(
        readable(calls, Side::Output),
        r#"get_weather({"city":"Oslo"})"#
    );
    let openai = r#"{"choices":[{"message":{"role":"assistant","content":"42"}}]}"#;
    assert_eq!(readable(openai, Side::Output), "42");
    let wrapped = r#"{"messages":[{"role":"user","content":"q"}]}"#;
    assert_eq!(readable(wrapped, Side::Input), "q");
    let legacy = r#"{"role":"assistant","content":"plain"}"#;
    assert_eq!(readable(legacy, Side::Output), "plain");
}

#[test]
fn plain_text_and_json_of_other_shapes_are_kept_as_given() {
    assert_eq!(readable("just text", Side::Input), "just text");
    assert_eq!(readable("\"quoted\"", Side::Input), "quoted");
    assert_eq!(readable("[1, 2", Side::Input), "[1, 2");
    assert_eq!(readable(r#"{"a":1}"#, Side::Input), r#"{"a":1}"#);
    assert_eq!(readable("[]", Side::Output), "[]");
    assert_eq!(readable("{not json", Side::Output), "{not json");
    // Deeply nested input is refused by the parser and kept as text, never a stack overflow.
    let deep = "[".repeat(100_000);
    assert_eq!(readable(&deep, Side::Input).len(), 100_000);
}

#[test]
fn openinference_flattened_messages_give_the_last_user_message() {
    let mut f = Fields::default();
    f.put("llm.input_messages.0.message.role", Val::S("system".into()));
    f.put("llm.input_messages.0.message.content", Val::S("sys".into()));
    f.put("llm.input_messages.1.message.role", Val::S("user".into()));
    f.put(
        "llm.input_messages.1.message.content",
        Val::S("the question".into()),
    );
    f.put(
        "llm.input_messages.2.message.role",
        Val::S("assistant".into()),
    );
    f.put(
        "llm.input_messages.2.message.content",
        Val::S("earlier".into()),
    );
    f.put(
        "llm.output_messages.0.message.content",
        Val::S("the answer".into()),
    );
    assert_eq!(flattened(&f, Side::Input).as_deref(), Some("the question"));
    assert_eq!(flattened(&f, Side::Output).as_deref(), Some("the answer"));
    assert_eq!(flattened(&Fields::default(), Side::Input), None);
}
