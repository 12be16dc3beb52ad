//! The typed inputs of the explicit provider: an LLM call, a chat message with its sources and
//! citations, a document event, a span's end and a trace's totals, with the metric sets per
//! span type and document step.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::kinds::{ChatRole, DocumentEventStatus, DocumentEventType, Status};

/// A source an answer drew on, stored in `chat_messages.sources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The document's id.
    pub doc_id: Option<Uuid>,
    /// The document's name.
    pub doc_name: Option<String>,
    /// The chunk's id.
    pub chunk_id: Option<String>,
    /// The retrieval score.
    pub score: Option<f64>,
    /// The retrieved text, or its start.
    pub excerpt: Option<String>,
}

/// A citation in an answer, stored in `chat_messages.citations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The marker in the answer's text, such as `[1]`.
    pub marker: String,
    /// The cited document's id.
    pub doc_id: Option<Uuid>,
    /// The cited page.
    pub page: Option<i32>,
    /// The cited section.
    pub section: Option<String>,
}

/// Metrics of a language model call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmMetrics {
    /// The model's name.
    pub model: Option<String>,
    /// Tokens in the prompt.
    pub prompt_tokens: Option<i64>,
    /// Tokens in the completion.
    pub completion_tokens: Option<i64>,
    /// Cost in US dollars.
    pub cost_usd: Option<Decimal>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
}

/// Metrics of an embedding call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingMetrics {
    /// The embedding model's name.
    pub model: Option<String>,
    /// Vectors computed.
    pub vector_count: Option<i64>,
    /// Dimensions of each vector.
    pub vector_dimensions: Option<i32>,
}

/// Metrics of a retrieval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetrievalMetrics {
    /// The query's text.
    pub query_text: Option<String>,
    /// Results returned.
    pub result_count: Option<i32>,
    /// Score of the best result.
    pub top_score: Option<f64>,
}

/// Metrics of document parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseMetrics {
    /// File type, such as `pdf`.
    pub file_type: Option<String>,
    /// File size in bytes.
    pub file_size_bytes: Option<i64>,
    /// Pages in the file.
    pub page_count: Option<i32>,
}

/// Metrics of chunking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkMetrics {
    /// Chunks made.
    pub chunk_count: Option<i32>,
    /// The strategy's name.
    pub chunk_strategy: Option<String>,
}

/// Metrics of writing vectors to an index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexMetrics {
    /// Vectors written.
    pub vectors_upserted: Option<i64>,
    /// The collection written to.
    pub collection_name: Option<String>,
}

/// The type-specific metrics a span ends with.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum SpanMetrics {
    /// No type-specific metrics.
    #[default]
    None,
    /// A language model call.
    Llm(LlmMetrics),
    /// An embedding call.
    Embedding(EmbeddingMetrics),
    /// A retrieval.
    Retrieval(RetrievalMetrics),
    /// Document parsing.
    Parse(ParseMetrics),
    /// Chunking.
    Chunk(ChunkMetrics),
    /// Writing to an index.
    Index(IndexMetrics),
}

/// How a span or trace ended, for `end_span` and `end_trace`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `Success` or `Error` (`InProgress` is taken as `Success`).
    pub status: Status,
    /// The error's type, such as `TimeoutError`.
    pub error_type: Option<String>,
    /// The error's message (cut to the error message limit).
    pub error_message: Option<String>,
}

impl Outcome {
    /// Ended without error.
    pub fn success() -> Self {
        Self {
            status: Status::Success,
            error_type: None,
            error_message: None,
        }
    }

    /// Ended with an error of the given type and message.
    pub fn error(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: Status::Error,
            error_type: Some(error_type.into()),
            error_message: Some(message.into()),
        }
    }
}

impl Default for Outcome {
    fn default() -> Self {
        Self::success()
    }
}

/// Parse metrics of a document event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentParseMetrics {
    /// Pages extracted.
    pub extracted_pages: Option<i32>,
    /// Characters extracted.
    pub extracted_chars: Option<i64>,
    /// Tables found.
    pub tables_found: Option<i32>,
    /// Images found.
    pub images_found: Option<i32>,
}

/// Chunk metrics of a document event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentChunkMetrics {
    /// Chunks created.
    pub chunks_created: Option<i32>,
    /// Average chunk size in characters.
    pub avg_chunk_size: Option<i32>,
}

/// Embed metrics of a document event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentEmbedMetrics {
    /// Vectors generated.
    pub vectors_generated: Option<i64>,
    /// The embedding model.
    pub embedding_model: Option<String>,
}

/// The step-specific metrics of a document event.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum DocumentMetrics {
    /// No step-specific metrics.
    #[default]
    None,
    /// Parsing.
    Parse(DocumentParseMetrics),
    /// Chunking.
    Chunk(DocumentChunkMetrics),
    /// Embedding.
    Embed(DocumentEmbedMetrics),
    /// Indexing.
    Index(IndexMetrics),
}

/// Totals given to [`end_trace`](crate::ObservabilityProvider::end_trace); a `None` is computed from
/// the trace's spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceTotals {
    /// Prompt tokens of the whole trace.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens of the whole trace.
    pub completion_tokens: Option<i64>,
    /// Cost of the whole trace in US dollars.
    pub total_cost_usd: Option<Decimal>,
}

/// How a span ended, for [`end_span`](crate::ObservabilityProvider::end_span).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanEnd {
    /// Status and error.
    pub outcome: Outcome,
    /// Duration; computed from the span's start when `None`.
    pub duration_ms: Option<f64>,
    /// Type-specific metrics.
    pub metrics: SpanMetrics,
    /// The start of the input (cut to the preview limit).
    pub input_preview: Option<String>,
    /// The start of the output (cut to the preview limit).
    pub output_preview: Option<String>,
    /// More metadata, merged over the metadata given at the start.
    pub metadata: Option<Value>,
}

/// A finished language model call, for [`log_llm_call`](crate::ObservabilityProvider::log_llm_call).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmCall {
    /// The span's name; `"llm_call"` when `None`.
    pub name: Option<String>,
    /// Model, tokens, cost and temperature.
    pub metrics: LlmMetrics,
    /// How long the call took; the span starts that long before now.
    pub latency_ms: Option<f64>,
    /// The start of the prompt.
    pub input_preview: Option<String>,
    /// The start of the answer.
    pub output_preview: Option<String>,
    /// Status and error.
    pub outcome: Outcome,
    /// Anything else worth keeping.
    pub metadata: Option<Value>,
}

/// A chat message, for [`log_chat_message`](crate::ObservabilityProvider::log_chat_message).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: ChatRole,
    /// Its text.
    pub content: String,
    /// Its position in the session.
    pub turn_number: Option<i32>,
    /// The sources an answer drew on.
    pub sources: Vec<Source>,
    /// The citations in an answer.
    pub citations: Vec<Citation>,
    /// Prompt tokens spent on it.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens spent on it.
    pub completion_tokens: Option<i64>,
    /// Time to answer.
    pub response_time_ms: Option<f64>,
}

impl ChatMessage {
    /// A message with the given role and text and nothing else.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            turn_number: None,
            sources: Vec::new(),
            citations: Vec::new(),
            prompt_tokens: None,
            completion_tokens: None,
            response_time_ms: None,
        }
    }
}

/// A step of document ingestion, for
/// [`log_document_event`](crate::ObservabilityProvider::log_document_event).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentEvent {
    /// The document.
    pub document_id: Uuid,
    /// The step.
    pub event_type: DocumentEventType,
    /// Its outcome.
    pub status: DocumentEventStatus,
    /// How long it took; the event starts that long before now.
    pub duration_ms: Option<f64>,
    /// The error's type, for a failed step.
    pub error_type: Option<String>,
    /// The error's message, for a failed step.
    pub error_message: Option<String>,
    /// Whether a failed step can be retried.
    pub retryable: Option<bool>,
    /// How many times the step was retried.
    pub retry_count: Option<i32>,
    /// Step-specific metrics.
    pub metrics: DocumentMetrics,
    /// Anything else worth keeping.
    pub metadata: Option<Value>,
}

impl DocumentEvent {
    /// An event of the given document, step and status and nothing else.
    pub fn new(
        document_id: Uuid,
        event_type: DocumentEventType,
        status: DocumentEventStatus,
    ) -> Self {
        Self {
            document_id,
            event_type,
            status,
            duration_ms: None,
            error_type: None,
            error_message: None,
            retryable: None,
            retry_count: None,
            metrics: DocumentMetrics::None,
            metadata: None,
        }
    }
}
