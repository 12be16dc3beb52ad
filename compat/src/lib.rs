//! Support for the tests of tracing-postgres against the LLM crates its users instrument with
//! (`tests/`): a loopback mock of the OpenAI and Ollama HTTP APIs, answering with fixed usage
//! so the stored tokens and costs can be checked exactly.

use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Prompt tokens of the mock's chat answer, of which [`CHAT_CACHED_TOKENS`] were cached.
pub const CHAT_PROMPT_TOKENS: i64 = 1_200;
/// Cached prompt tokens of the mock's chat answer.
pub const CHAT_CACHED_TOKENS: i64 = 200;
/// Completion tokens of the mock's chat answer.
pub const CHAT_COMPLETION_TOKENS: i64 = 30;
/// The mock's chat answer.
pub const CHAT_ANSWER: &str = "Refunds are accepted within 30 days.";
/// Prompt tokens of the mock's embeddings answer.
pub const EMBED_PROMPT_TOKENS: i64 = 50_000;
/// Prompt and completion tokens of the mock's Ollama answer.
pub const OLLAMA_TOKENS: (i64, i64) = (21, 7);
/// Prompt and completion tokens of the mock's tool-calling turn.
pub const TOOL_TURN_TOKENS: (i64, i64) = (400, 20);
/// A chat model the mock answers with HTTP 500.
pub const FAILING_MODEL: &str = "gpt-4o-failing";

/// A loopback server speaking the OpenAI (`/v1/chat/completions`, `/v1/embeddings`) and
/// Ollama (`/api/chat`) APIs.
pub struct Providers {
    server: MockServer,
}

impl Providers {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "model": FAILING_MODEL })))
            .respond_with(ResponseTemplate::new(500).set_body_json(json!({
                "error": { "message": "the mock failed", "type": "server_error" }
            })))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "chatcmpl-mock-1",
                "object": "chat.completion",
                "created": 1_764_979_200,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": CHAT_ANSWER },
                    "finish_reason": "stop"
                }],
                "usage": {
                    "prompt_tokens": CHAT_PROMPT_TOKENS,
                    "completion_tokens": CHAT_COMPLETION_TOKENS,
                    "total_tokens": CHAT_PROMPT_TOKENS + CHAT_COMPLETION_TOKENS,
                    "prompt_tokens_details": { "cached_tokens": CHAT_CACHED_TOKENS }
                }
            })))
            .with_priority(5)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/embeddings"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "object": "list",
                "data": [{ "object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3] }],
                "model": "text-embedding-3-small",
                "usage": { "prompt_tokens": EMBED_PROMPT_TOKENS, "total_tokens": EMBED_PROMPT_TOKENS }
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/chat"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "model": "llama3.1",
                "created_at": "2026-12-06T00:00:00Z",
                "message": { "role": "assistant", "content": "Hello from llama." },
                "done": true,
                "done_reason": "stop",
                "prompt_eval_count": OLLAMA_TOKENS.0,
                "eval_count": OLLAMA_TOKENS.1
            })))
            .mount(&server)
            .await;
        Self { server }
    }

    /// Makes the next chat completion (one only) a call of tool `name` with `arguments`, as a
    /// model starting an agent's turn does; the ones after it answer as usual.
    pub async fn first_chat_calls_tool(&self, name: &str, arguments: &str) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "chatcmpl-mock-tool",
                "object": "chat.completion",
                "created": 1_764_979_200,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "id": "call-1",
                            "type": "function",
                            "function": { "name": name, "arguments": arguments }
                        }]
                    },
                    "finish_reason": "tool_calls"
                }],
                "usage": {
                    "prompt_tokens": TOOL_TURN_TOKENS.0,
                    "completion_tokens": TOOL_TURN_TOKENS.1,
                    "total_tokens": TOOL_TURN_TOKENS.0 + TOOL_TURN_TOKENS.1
                }
            })))
            .up_to_n_times(1)
            .with_priority(2)
            .mount(&self.server)
            .await;
    }

    /// The server's base URL (`http://127.0.0.1:<port>`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }
}
