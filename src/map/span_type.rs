//! A span's type (`llm`, `embedding`, `retrieval`, ...): as named by a field of one of the
//! conventions, else inferred from the fields it has.

use crate::model::fields::{Fields, Slot};
use crate::model::kinds::SpanType;

/// The span's type: from `span_type`, else `gen_ai.operation.name`, else
/// `openinference.span.kind` (the lowest-ranked of these wins), else inferred from its fields.
pub(crate) fn span_type(f: &Fields) -> SpanType {
    if let Some(v) = f.get(Slot::SpanType) {
        let text = v.to_text();
        let lower = text.trim().to_ascii_lowercase();
        return match lower.as_str() {
            "chat" | "text_completion" | "generate_content" | "llm" | "generation" => SpanType::Llm,
            "embeddings" | "embedding" => SpanType::Embedding,
            "retrieval" | "retriever" => SpanType::Retrieval,
            "reranker" | "rerank" => SpanType::Rerank,
            "execute_tool" | "tool" => SpanType::Tool,
            "invoke_agent" | "create_agent" | "agent" => SpanType::Agent,
            "chain" | "internal" => SpanType::Internal,
            _ => SpanType::parse(&lower).unwrap_or(SpanType::Internal),
        };
    }
    if f.has(Slot::Model) || f.has(Slot::PromptTokens) || f.has(Slot::CompletionTokens) {
        SpanType::Llm
    } else if f.has(Slot::EmbeddingModel)
        || f.has(Slot::VectorCount)
        || f.has(Slot::VectorDimensions)
    {
        SpanType::Embedding
    } else if f.has(Slot::QueryText) || f.has(Slot::ResultCount) || f.has(Slot::TopScore) {
        SpanType::Retrieval
    } else if f.has(Slot::FileType) || f.has(Slot::PageCount) || f.has(Slot::FileSizeBytes) {
        SpanType::Parse
    } else if f.has(Slot::ChunkCount) || f.has(Slot::ChunkStrategy) {
        SpanType::Chunk
    } else if f.has(Slot::VectorsUpserted) || f.has(Slot::CollectionName) {
        SpanType::Index
    } else {
        SpanType::Internal
    }
}
