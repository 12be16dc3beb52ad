//! The tables as the writer sees them: their columns, how a row is encoded, and the SQL
//! that writes a batch of them.

use super::copy::{CopyEncoder, CopyRow};
use crate::model::kinds::Status;
use crate::model::rows::{ChatMessageRow, DocumentEventRow, ScoreRow, SpanRow, TraceRow};
use crate::schema;

/// How rows of a table are reconciled with rows already stored under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// A finished row replaces a stored start (`in_progress`) row, never a finished one.
    ReplaceInProgress,
    /// A row already stored wins (a retry of a batch that did commit).
    Keep,
}

/// A table the writer fills.
pub(crate) trait Table: CopyRow {
    /// The table's unqualified name in the `observability` schema.
    const NAME: &'static str;
    /// The primary key's columns.
    const KEY: &'static str;
    /// What to do when a row's key is already stored.
    const CONFLICT: Conflict;
}

/// `COPY <target> (<columns>) FROM STDIN (FORMAT binary)`.
pub(crate) fn copy_sql(target: &str, columns: &[&str]) -> String {
    format!(
        "COPY {target} ({}) FROM STDIN (FORMAT binary)",
        columns.join(", ")
    )
}

/// The staging table a retried or reconciled batch is copied into before its upsert.
pub(crate) fn stage_name<T: Table>() -> String {
    format!("tpg_stage_{}", T::NAME)
}

/// Creates the session's staging table if it does not exist yet; its rows vanish at commit.
pub(crate) fn create_stage_sql<T: Table>() -> String {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE observability.{}) ON COMMIT DELETE ROWS",
        stage_name::<T>(),
        T::NAME
    )
}

/// Moves the staging table's rows into the table, reconciling with stored rows.
pub(crate) fn upsert_sql<T: Table>() -> String {
    let cols = T::COLUMNS.join(", ");
    let on_conflict = match T::CONFLICT {
        Conflict::Keep => "DO NOTHING".to_owned(),
        Conflict::ReplaceInProgress => {
            let sets: Vec<String> = T::COLUMNS
                .iter()
                .filter(|c| !T::KEY.split(", ").any(|k| k == **c))
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            format!(
                "DO UPDATE SET {} WHERE t.status = 'in_progress'",
                sets.join(", ")
            )
        }
    };
    format!(
        // In key order: transactions on different connections then lock the rows they share
        // in one order and wait for each other instead of deadlocking.
        "INSERT INTO observability.{name} AS t ({cols}) SELECT {cols} FROM {stage} \
         ORDER BY {key} ON CONFLICT ({key}) {on_conflict}",
        name = T::NAME,
        stage = stage_name::<T>(),
        key = T::KEY,
    )
}

fn status_text(s: Option<&Status>) -> &str {
    s.map_or("in_progress", Status::as_str)
}

impl CopyRow for TraceRow {
    const COLUMNS: &'static [&'static str] = schema::TRACES.columns;

    fn encode(&self, e: &mut CopyEncoder) {
        e.uuid(self.id);
        e.uuid_hex(self.id, 32);
        e.text(&self.name);
        e.text(&self.operation_type);
        e.opt_uuid(self.user_id);
        e.opt_text(self.session_id.as_deref());
        e.opt_uuid(self.kb_id);
        e.ts(self.started_at);
        e.opt_ts(self.ended_at);
        e.opt_f64(self.duration_ms);
        e.text(self.status.as_str());
        e.opt_text(self.error_type.as_deref());
        e.opt_text(self.error_message.as_deref());
        e.opt_i64(self.prompt_tokens);
        e.opt_i64(self.completion_tokens);
        e.opt_i64(self.total_tokens);
        e.opt_numeric_micros(self.total_cost_micros);
        e.jsonb(&self.metadata, "{}");
    }
}

impl Table for TraceRow {
    const NAME: &'static str = schema::TRACES.name;
    const KEY: &'static str = schema::TRACES.key;
    const CONFLICT: Conflict = Conflict::ReplaceInProgress;
}

impl CopyRow for SpanRow {
    const COLUMNS: &'static [&'static str] = schema::SPANS.columns;

    fn encode(&self, e: &mut CopyEncoder) {
        self.encode_common(e);
        self.encode_specific(e);
        e.jsonb(&self.metadata, "{}");
    }
}

impl SpanRow {
    /// Whether every column left out of [`SHORT_SPAN_COLUMNS`](schema::SHORT_SPAN_COLUMNS) is NULL in this row.
    pub(crate) fn is_short(&self) -> bool {
        // Every field named, so a column added to the row must be placed here.
        let SpanRow {
            id: _,
            trace_id: _,
            parent_span_id: _,
            name: _,
            span_type: _,
            started_at: _,
            ended_at: _,
            duration_ms: _,
            status: _,
            error_type,
            error_message,
            model,
            prompt_tokens,
            completion_tokens,
            cost_micros,
            cost_source,
            temperature,
            embedding_model,
            vector_count,
            vector_dimensions,
            query_text,
            result_count,
            top_score,
            file_type,
            file_size_bytes,
            page_count,
            chunk_count,
            chunk_strategy,
            vectors_upserted,
            collection_name,
            input_preview,
            output_preview,
            metadata: _,
            start_sent: _,
        } = self;
        error_type.is_none()
            && error_message.is_none()
            && model.is_none()
            && prompt_tokens.is_none()
            && completion_tokens.is_none()
            && cost_micros.is_none()
            && cost_source.is_none()
            && temperature.is_none()
            && embedding_model.is_none()
            && vector_count.is_none()
            && vector_dimensions.is_none()
            && query_text.is_none()
            && result_count.is_none()
            && top_score.is_none()
            && file_type.is_none()
            && file_size_bytes.is_none()
            && page_count.is_none()
            && chunk_count.is_none()
            && chunk_strategy.is_none()
            && vectors_upserted.is_none()
            && collection_name.is_none()
            && input_preview.is_none()
            && output_preview.is_none()
    }

    /// The columns of [`SPAN_COMMON_COLUMNS`](schema::SPAN_COMMON_COLUMNS), which every span row is sent with.
    pub(crate) fn encode_common(&self, e: &mut CopyEncoder) {
        e.uuid(self.id);
        e.uuid(self.trace_id);
        e.opt_uuid(self.parent_span_id);
        e.uuid_hex(self.id, 16);
        e.text(&self.name);
        e.text(&self.span_type);
        e.ts(self.started_at);
        e.opt_ts(self.ended_at);
        e.opt_f64(self.duration_ms);
        e.text(status_text(self.status.as_ref()));
    }

    /// The type-specific columns, which [`SHORT_SPAN_COLUMNS`](schema::SHORT_SPAN_COLUMNS) leaves out.
    pub(crate) fn encode_specific(&self, e: &mut CopyEncoder) {
        e.opt_text(self.error_type.as_deref());
        e.opt_text(self.error_message.as_deref());
        e.opt_text(self.model.as_deref());
        e.opt_i64(self.prompt_tokens);
        e.opt_i64(self.completion_tokens);
        e.opt_numeric_micros(self.cost_micros);
        e.opt_text(self.cost_source);
        e.opt_f64(self.temperature);
        e.opt_text(self.embedding_model.as_deref());
        e.opt_i64(self.vector_count);
        e.opt_i32(self.vector_dimensions);
        e.opt_text(self.query_text.as_deref());
        e.opt_i32(self.result_count);
        e.opt_f64(self.top_score);
        e.opt_text(self.file_type.as_deref());
        e.opt_i64(self.file_size_bytes);
        e.opt_i32(self.page_count);
        e.opt_i32(self.chunk_count);
        e.opt_text(self.chunk_strategy.as_deref());
        e.opt_i64(self.vectors_upserted);
        e.opt_text(self.collection_name.as_deref());
        e.opt_text(self.input_preview.as_deref());
        e.opt_text(self.output_preview.as_deref());
    }
}

impl Table for SpanRow {
    const NAME: &'static str = schema::SPANS.name;
    const KEY: &'static str = schema::SPANS.key;
    const CONFLICT: Conflict = Conflict::ReplaceInProgress;
}

impl CopyRow for ChatMessageRow {
    const COLUMNS: &'static [&'static str] = schema::CHAT_MESSAGES.columns;

    fn encode(&self, e: &mut CopyEncoder) {
        e.uuid(self.id);
        e.uuid(self.trace_id);
        e.opt_uuid(self.span_id);
        e.text(&self.session_id);
        e.uuid(self.user_id);
        e.uuid(self.kb_id);
        e.text(&self.role);
        e.text(&self.content);
        e.opt_i32(self.turn_number);
        e.jsonb(&self.sources, "[]");
        e.jsonb(&self.citations, "[]");
        e.opt_i64(self.prompt_tokens);
        e.opt_i64(self.completion_tokens);
        e.opt_f64(self.response_time_ms);
        e.ts(self.created_at);
    }
}

impl Table for ChatMessageRow {
    const NAME: &'static str = schema::CHAT_MESSAGES.name;
    const KEY: &'static str = schema::CHAT_MESSAGES.key;
    const CONFLICT: Conflict = Conflict::Keep;
}

impl CopyRow for DocumentEventRow {
    const COLUMNS: &'static [&'static str] = schema::DOCUMENT_EVENTS.columns;

    fn encode(&self, e: &mut CopyEncoder) {
        e.uuid(self.id);
        e.uuid(self.trace_id);
        e.opt_uuid(self.span_id);
        e.uuid(self.document_id);
        e.opt_uuid(self.kb_id);
        e.text(&self.event_type);
        e.text(&self.status);
        e.ts(self.started_at);
        e.opt_ts(self.completed_at);
        e.opt_f64(self.duration_ms);
        e.opt_i32(self.extracted_pages);
        e.opt_i64(self.extracted_chars);
        e.opt_i32(self.tables_found);
        e.opt_i32(self.images_found);
        e.opt_i32(self.chunks_created);
        e.opt_i32(self.avg_chunk_size);
        e.opt_i64(self.vectors_generated);
        e.opt_text(self.embedding_model.as_deref());
        e.opt_i64(self.vectors_upserted);
        e.opt_text(self.collection_name.as_deref());
        e.opt_text(self.error_type.as_deref());
        e.opt_text(self.error_message.as_deref());
        e.opt_bool(self.retryable);
        e.opt_i32(self.retry_count);
        e.jsonb(&self.metadata, "{}");
    }
}

impl Table for DocumentEventRow {
    const NAME: &'static str = schema::DOCUMENT_EVENTS.name;
    const KEY: &'static str = schema::DOCUMENT_EVENTS.key;
    const CONFLICT: Conflict = Conflict::Keep;
}

impl CopyRow for ScoreRow {
    const COLUMNS: &'static [&'static str] = schema::SCORES.columns;

    fn encode(&self, e: &mut CopyEncoder) {
        e.uuid(self.id);
        e.uuid(self.trace_id);
        e.opt_uuid(self.span_id);
        e.opt_uuid(self.message_id);
        e.text(&self.name);
        e.text(self.data_type.as_str());
        e.opt_f64(self.value_numeric);
        e.opt_bool(self.value_bool);
        e.opt_text(self.value_text.as_deref());
        e.opt_text(self.comment.as_deref());
        e.text(self.source.as_str());
        e.opt_text(self.author.as_deref());
        e.ts(self.created_at);
    }
}

/// Insert-only: a score's id is made once, on the client, so a retried batch meets the rows
/// its first attempt may have committed and keeps them (`DO NOTHING`), storing none twice.
impl Table for ScoreRow {
    const NAME: &'static str = schema::SCORES.name;
    const KEY: &'static str = schema::SCORES.key;
    const CONFLICT: Conflict = Conflict::Keep;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_score_meets_the_stored_one_on_its_whole_key_and_is_dropped() {
        assert_eq!(
            upsert_sql::<ScoreRow>(),
            "INSERT INTO observability.scores AS t (id, trace_id, span_id, message_id, name, \
             data_type, value_numeric, value_bool, value_text, comment, source, author, \
             created_at) SELECT id, trace_id, span_id, message_id, name, data_type, \
             value_numeric, value_bool, value_text, comment, source, author, created_at FROM \
             tpg_stage_scores ORDER BY trace_id, id, created_at ON CONFLICT (trace_id, id, \
             created_at) DO NOTHING"
        );
    }
}
