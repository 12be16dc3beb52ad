//! Events that are rows of their own, mapped from their fields: a chat message (`role` and
//! `content`) and a document event (`document_id` and `event_type`).

use chrono::Utc;
use serde_json::Value;

use super::config::Scope;
use super::metadata::parse_uuid;
use crate::model::fields::{Fields, Slot, Val};
use crate::model::ids::v7_now;
use crate::model::kinds::DocumentEventStatus;
use crate::model::rows::{ChatMessageRow, DocumentEventRow};
use crate::model::sanitize::{TextLimits, clean_json, clean_owned, clean_text};
use crate::model::values::{back_from, count, count32};

/// The row of a chat event (one with `role` and `content`) in `scope`; refused without a
/// session, a user and a kb id on the event or its spans.
pub(crate) fn chat_event(
    l: &TextLimits,
    fields: &Fields,
    scope: &Scope<'_>,
) -> Result<ChatMessageRow, &'static str> {
    let user_id = fields
        .get(Slot::UserId)
        .and_then(parse_uuid)
        .or(scope.user_id);
    let kb_id = fields.get(Slot::KbId).and_then(parse_uuid).or(scope.kb_id);
    let session_id = fields
        .text(Slot::SessionId)
        .or_else(|| scope.session_id.map(str::to_owned));
    let (Some(user_id), Some(kb_id), Some(session_id)) = (user_id, kb_id, session_id) else {
        return Err("chat event: no session id, user id and kb id on the event or its spans");
    };
    let json = |slot| {
        let v = match fields.get(slot) {
            None => return Value::Array(Vec::new()),
            Some(Val::S(s)) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
            }
            Some(other) => other.clone().into_json(),
        };
        clean_json(v, l)
    };
    Ok(ChatMessageRow {
        id: v7_now(),
        trace_id: scope.trace_id,
        span_id: scope.span_id,
        session_id: clean_text(&session_id, l.label),
        user_id,
        kb_id,
        role: clean_text(
            &fields
                .text(Slot::Role)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            l.label,
        ),
        content: clean_owned(fields.text(Slot::Content).unwrap_or_default(), l.content),
        turn_number: count32(fields.i32(Slot::TurnNumber)),
        sources: json(Slot::Sources),
        citations: json(Slot::Citations),
        prompt_tokens: count(fields.i64(Slot::PromptTokens)),
        completion_tokens: count(fields.i64(Slot::CompletionTokens)),
        response_time_ms: fields
            .f64(Slot::ResponseTimeMs)
            .filter(|x| x.is_finite() && *x >= 0.0),
        created_at: Utc::now(),
    })
}

/// The row of a document event (one with `document_id` and `event_type`) in `scope`; refused
/// when its `document_id` is not a UUID.
pub(crate) fn document_event(
    l: &TextLimits,
    mut fields: Fields,
    scope: &Scope<'_>,
) -> Result<DocumentEventRow, &'static str> {
    let Some(document_id) = fields.get(Slot::DocumentId).and_then(parse_uuid) else {
        return Err("document event: document_id is not a UUID");
    };
    // The status column holds four values; common synonyms map onto them, and anything
    // else is stored as `completed` with the given status kept in metadata.
    let given_status = fields
        .text(Slot::Status)
        .map(|s| clean_text(s.trim(), l.label));
    let status = given_status.as_deref().map(document_status);
    let now = Utc::now();
    let duration = fields
        .f64(Slot::DurationMs)
        .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e12);
    let status_unknown = matches!(status, Some(None));
    let status = status.flatten().unwrap_or(DocumentEventStatus::Completed);
    let finished = status != DocumentEventStatus::Started;
    let started_at = if finished {
        back_from(now, duration)
    } else {
        now
    };
    let mut extra = fields.take_extra_json(l);
    if status_unknown && let Some(s) = given_status {
        extra.insert("status".to_owned(), Value::String(s));
    }
    // A kb id that is not a UUID has no column to go to: keep it as given.
    if let Some(v) = fields.get(Slot::KbId).filter(|v| parse_uuid(v).is_none()) {
        extra.insert("kb_id".to_owned(), v.clone().into_clean_json(l.label));
    }
    if let Some(m) = fields.text(Slot::Message) {
        extra.insert(
            "message".to_owned(),
            Value::String(clean_owned(m, l.content)),
        );
    }
    Ok(DocumentEventRow {
        id: v7_now(),
        trace_id: scope.trace_id,
        span_id: scope.span_id,
        document_id,
        kb_id: fields.get(Slot::KbId).and_then(parse_uuid).or(scope.kb_id),
        event_type: clean_text(
            &fields
                .text(Slot::EventType)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            l.label,
        ),
        status: status.as_str().to_owned(),
        started_at,
        completed_at: finished.then_some(now),
        duration_ms: duration,
        extracted_pages: count32(fields.i32(Slot::ExtractedPages)),
        extracted_chars: count(fields.i64(Slot::ExtractedChars)),
        tables_found: count32(fields.i32(Slot::TablesFound)),
        images_found: count32(fields.i32(Slot::ImagesFound)),
        chunks_created: count32(fields.i32(Slot::ChunksCreated)),
        avg_chunk_size: count32(fields.i32(Slot::AvgChunkSize)),
        vectors_generated: count(fields.i64(Slot::VectorsGenerated)),
        embedding_model: fields
            .text(Slot::EmbeddingModel)
            .or_else(|| fields.text(Slot::Model))
            .map(|s| clean_text(&s, l.label)),
        vectors_upserted: count(fields.i64(Slot::VectorsUpserted)),
        collection_name: fields
            .text(Slot::CollectionName)
            .map(|s| clean_text(&s, l.label)),
        error_type: fields
            .text(Slot::ErrorType)
            .map(|s| clean_text(&s, l.label)),
        error_message: fields
            .text(Slot::ErrorMessage)
            .or_else(|| fields.text(Slot::Error))
            .map(|s| clean_owned(s, l.error_message)),
        retryable: fields.bool(Slot::Retryable),
        retry_count: count32(fields.i32(Slot::RetryCount)),
        metadata: Value::Object(extra),
    })
}

/// A document event's status from its text: the four stored values and their common synonyms;
/// `None` for anything else.
fn document_status(s: &str) -> Option<DocumentEventStatus> {
    let lower = s.to_ascii_lowercase();
    Some(match lower.as_str() {
        "error" | "fail" | "failure" | "errored" => DocumentEventStatus::Failed,
        "ok" | "success" | "succeeded" | "done" | "complete" => DocumentEventStatus::Completed,
        "start" | "running" | "in_progress" | "begin" => DocumentEventStatus::Started,
        "skip" => DocumentEventStatus::Skipped,
        other => return DocumentEventStatus::parse(other),
    })
}
