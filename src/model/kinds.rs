//! The enums stored as text: a trace's operation type, a span's type, a status, a chat role,
//! a document event's type and status.

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

text_enum! {
    /// Who or what gave a score, stored in `scores.source`.
    ScoreSource {
        /// A person using the application (a thumbs-down, a star rating).
        User => "user",
        /// A model judging the output (an evaluation run).
        Model => "model",
        /// A rule or check in code (a regular expression, a citation check).
        Rule => "rule",
        /// The application, without saying which of the above (the default).
        Api => "api",
    }
}

text_enum! {
    /// The kind of a score's value, stored in `scores.data_type`.
    ScoreDataType {
        /// A number, in `value_numeric`.
        Numeric => "numeric",
        /// A yes or no, in `value_bool`.
        Boolean => "boolean",
        /// A label, in `value_text`.
        Categorical => "categorical",
    }
}
