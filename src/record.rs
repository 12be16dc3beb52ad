//! The typed inputs of the provider (enums and metric sets) and the row each table receives.
//!
//! The application's threads build these rows, except for the layer's closed spans and
//! `log_llm_call`s, which are queued raw and mapped on the writer's thread. A row's
//! `status` says what it is: `in_progress` rows are starts (visible while the work runs), any
//! other status is the finished row, which replaces the start.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }
        $(custom: $(#[$cmeta:meta])* $custom:ident)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            $($(#[$cmeta])* $custom(String),)?
        }

        impl $name {
            /// The text stored in the database.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    $(Self::$custom(s) => s.as_str(),)?
                }
            }

            /// The stored text, without a copy for the built-in variants.
            pub fn into_text(self) -> std::borrow::Cow<'static, str> {
                match self {
                    $(Self::$variant => std::borrow::Cow::Borrowed($text),)+
                    $(Self::$custom(s) => std::borrow::Cow::Owned(s),)?
                }
            }

            /// Parses the stored text (case-insensitive).
            #[allow(unreachable_code, unused_variables)]
            pub fn parse(s: &str) -> Option<Self> {
                $(if s.eq_ignore_ascii_case($text) { return Some(Self::$variant); })+
                $(return Some(Self::$custom(s.to_ascii_lowercase()));)?
                None
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Status of a trace or span.
    Status {
        /// Started, not yet ended.
        InProgress => "in_progress",
        /// Ended without error.
        Success => "success",
        /// Ended with an error.
        Error => "error",
    }
}

text_enum! {
    /// What a trace does, stored in `traces.operation_type`.
    OperationType {
        /// A chat request.
        Chat => "chat",
        /// Document ingestion.
        Document => "document",
        /// A search.
        Search => "search",
        /// A generation without chat history.
        Generation => "generation",
    }
    custom:
    /// Any other operation; stored as given (lower-cased when parsed).
    Custom
}

text_enum! {
    /// The kind of work a span does, stored in `spans.span_type`.
    SpanType {
        /// A call to a language model.
        Llm => "llm",
        /// Computing embeddings.
        Embedding => "embedding",
        /// Retrieving from a vector store or index.
        Retrieval => "retrieval",
        /// Reranking retrieved results.
        Rerank => "rerank",
        /// Parsing a document.
        Parse => "parse",
        /// Chunking a document.
        Chunk => "chunk",
        /// Writing vectors to an index.
        Index => "index",
        /// A tool call.
        Tool => "tool",
        /// An agent step.
        Agent => "agent",
        /// Any other unit of work.
        Internal => "internal",
    }
    custom:
    /// A type of the application's own.
    Custom
}

text_enum! {
    /// A step of document ingestion, stored in `document_events.event_type`.
    DocumentEventType {
        /// The document was received.
        Upload => "upload",
        /// Text was extracted.
        Parse => "parse",
        /// The text was split into chunks.
        Chunk => "chunk",
        /// Chunks were embedded.
        Embed => "embed",
        /// Vectors were written to the index.
        Index => "index",
        /// Ingestion finished.
        Complete => "complete",
    }
    custom:
    /// A step of the application's own.
    Custom
}

text_enum! {
    /// Outcome of a document ingestion step, stored in `document_events.status`.
    DocumentEventStatus {
        /// The step started.
        Started => "started",
        /// The step completed.
        Completed => "completed",
        /// The step failed.
        Failed => "failed",
        /// The step was skipped.
        Skipped => "skipped",
    }
}

text_enum! {
    /// Who wrote a chat message.
    ChatRole {
        /// The end user.
        User => "user",
        /// The model's answer.
        Assistant => "assistant",
        /// A system prompt.
        System => "system",
        /// A tool's output.
        Tool => "tool",
    }
    custom:
    /// Any other role.
    Custom
}

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

/// Converts dollars to micro-dollars, refusing what `numeric(10,6)` cannot hold or what is not a
/// cost (negative).
pub(crate) fn cost_to_micros(cost: Decimal) -> Option<i64> {
    // Half away from zero, as PostgreSQL rounds numeric.
    let micros = cost
        .checked_mul(Decimal::from(1_000_000))?
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()?;
    money_in_range(micros)
}

/// An amount in micro-dollars that `numeric(10,6)` holds and that is a cost (not negative).
pub(crate) fn money_in_range(micros: i64) -> Option<i64> {
    (0..10_000_000_000).contains(&micros).then_some(micros)
}

/// Micro-dollars back to a decimal with six places.
pub fn micros_to_decimal(micros: i64) -> Decimal {
    Decimal::new(micros, 6)
}

/// Text that is often a `&'static str` (a span's name, a built-in type): no copy then.
pub(crate) type Text = std::borrow::Cow<'static, str>;

/// A row of `observability.traces`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceRow {
    pub id: Uuid,
    pub name: Text,
    pub operation_type: Text,
    pub user_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub kb_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub status: Status,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub total_cost_micros: Option<i64>,
    pub metadata: Value,
    /// For a finished row: whether a start row was queued before it. A finished row without a
    /// start cannot meet a stored row and is written by plain `COPY`.
    pub start_sent: bool,
}

/// A row of `observability.spans`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SpanRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub parent_span_id: Option<Uuid>,
    pub name: Text,
    pub span_type: Text,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub status: Option<Status>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cost_micros: Option<i64>,
    pub cost_source: Option<&'static str>,
    pub temperature: Option<f64>,
    pub embedding_model: Option<String>,
    pub vector_count: Option<i64>,
    pub vector_dimensions: Option<i32>,
    pub query_text: Option<String>,
    pub result_count: Option<i32>,
    pub top_score: Option<f64>,
    pub file_type: Option<String>,
    pub file_size_bytes: Option<i64>,
    pub page_count: Option<i32>,
    pub chunk_count: Option<i32>,
    pub chunk_strategy: Option<String>,
    pub vectors_upserted: Option<i64>,
    pub collection_name: Option<String>,
    pub input_preview: Option<String>,
    pub output_preview: Option<String>,
    pub metadata: Value,
    /// For a finished row: whether a start row was queued before it (see [`TraceRow`]).
    pub start_sent: bool,
}

impl SpanRow {
    /// `true` for a start row, which a later finished row replaces.
    pub fn is_start(&self) -> bool {
        matches!(self.status, None | Some(Status::InProgress))
    }
}

/// An empty start row: what a trace row is before its fields are filled.
impl Default for TraceRow {
    fn default() -> Self {
        Self {
            id: Uuid::nil(),
            name: Text::Borrowed(""),
            operation_type: Text::Borrowed(""),
            user_id: None,
            session_id: None,
            kb_id: None,
            started_at: DateTime::default(),
            ended_at: None,
            duration_ms: None,
            status: Status::InProgress,
            error_type: None,
            error_message: None,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            total_cost_micros: None,
            metadata: Value::Null,
            start_sent: false,
        }
    }
}

impl TraceRow {
    /// `true` for a start row, which a later finished row replaces.
    pub fn is_start(&self) -> bool {
        self.status == Status::InProgress
    }
}

/// A row of `observability.chat_messages`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatMessageRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub span_id: Option<Uuid>,
    pub session_id: String,
    pub user_id: Uuid,
    pub kb_id: Uuid,
    pub role: String,
    pub content: String,
    pub turn_number: Option<i32>,
    pub sources: Value,
    pub citations: Value,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub response_time_ms: Option<f64>,
    pub created_at: DateTime<Utc>,
}

/// A row of `observability.document_events`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct DocumentEventRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub span_id: Option<Uuid>,
    pub document_id: Uuid,
    pub kb_id: Option<Uuid>,
    pub event_type: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub extracted_pages: Option<i32>,
    pub extracted_chars: Option<i64>,
    pub tables_found: Option<i32>,
    pub images_found: Option<i32>,
    pub chunks_created: Option<i32>,
    pub avg_chunk_size: Option<i32>,
    pub vectors_generated: Option<i64>,
    pub embedding_model: Option<String>,
    pub vectors_upserted: Option<i64>,
    pub collection_name: Option<String>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub retryable: Option<bool>,
    pub retry_count: Option<i32>,
    pub metadata: Value,
}

/// A record in the queue with its bytes as counted against the byte budget, counted once when
/// it is queued so the writer releases exactly that much.
pub(crate) type Queued = (Record, usize);

/// One item of the queue between the application's threads and the writer.
///
/// Rows are boxed so the queue's slots stay small: a full queue of small slots costs little
/// memory, and the heap behind a slot exists only while a record is queued.
#[derive(Debug)]
pub(crate) enum Record {
    Trace(Box<TraceRow>),
    Span(Box<SpanRow>),
    Chat(Box<ChatMessageRow>),
    Document(Box<DocumentEventRow>),
    /// A closed span of the layer, not yet mapped to its row: the writer maps it (see
    /// [`finish_span`](crate::layer::finish_span)), so the caller's thread does not.
    Raw(Box<crate::layer::QueuedSpan>),
    /// A `log_llm_call` not yet mapped to its row: the writer maps it (see
    /// [`finish_llm`](crate::provider::finish_llm)).
    Llm(Box<crate::provider::RawLlmCall>),
}

impl Record {
    /// Approximate heap bytes this record holds, for the queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        fn s(x: &Option<String>) -> usize {
            x.as_ref().map_or(0, String::len)
        }
        let j = json_bytes;
        match self {
            Record::Trace(r) => {
                std::mem::size_of::<TraceRow>()
                    + r.name.len()
                    + r.operation_type.len()
                    + s(&r.session_id)
                    + s(&r.error_type)
                    + s(&r.error_message)
                    + j(&r.metadata)
            }
            Record::Span(r) => {
                std::mem::size_of::<SpanRow>()
                    + r.name.len()
                    + r.span_type.len()
                    + s(&r.error_type)
                    + s(&r.error_message)
                    + s(&r.model)
                    + s(&r.embedding_model)
                    + s(&r.query_text)
                    + s(&r.file_type)
                    + s(&r.chunk_strategy)
                    + s(&r.collection_name)
                    + s(&r.input_preview)
                    + s(&r.output_preview)
                    + j(&r.metadata)
            }
            Record::Chat(r) => {
                std::mem::size_of::<ChatMessageRow>()
                    + r.session_id.len()
                    + r.role.len()
                    + r.content.len()
                    + j(&r.sources)
                    + j(&r.citations)
            }
            Record::Raw(r) => r.approx_bytes(),
            Record::Llm(r) => r.approx_bytes(),
            Record::Document(r) => {
                std::mem::size_of::<DocumentEventRow>()
                    + r.event_type.len()
                    + r.status.len()
                    + s(&r.embedding_model)
                    + s(&r.collection_name)
                    + s(&r.error_type)
                    + s(&r.error_message)
                    + j(&r.metadata)
            }
        }
    }
}

/// Approximate heap bytes of a JSON value: its strings and keys, and a node's overhead for
/// every value (depth is bounded by the sanitiser, so the walk is short for the JSON records
/// carry).
pub(crate) fn json_bytes(v: &Value) -> usize {
    // A value's own bytes; containers go on the stack. Most records carry a flat object or
    // nothing, so the stack rarely allocates.
    fn one<'a>(v: &'a Value, stack: &mut Vec<&'a Value>) -> usize {
        match v {
            Value::Array(_) | Value::Object(_) => {
                stack.push(v);
                32
            }
            Value::String(s) => 32 + s.len(),
            _ => 32,
        }
    }
    let mut stack = Vec::new();
    let mut bytes = one(v, &mut stack);
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => a.iter().for_each(|v| bytes += one(v, &mut stack)),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| bytes += k.len() + one(v, &mut stack)),
            _ => {}
        }
    }
    bytes
}
