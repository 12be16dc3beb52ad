-- The observability schema: four tables written by the tracing-postgres writer.
--
-- Ids are UUIDv7 made by the client (time-ordered, no round trip). One id per trace:
-- traces.id, referenced as trace_id by the three other tables; `traces.trace_id` is the same id
-- printed as a W3C trace id (32 lowercase hex), `spans.span_id` a W3C span id (16 hex).
--
-- Every primary key includes the row's time column, so the tables can become range-partitioned
-- by time without changing a key. There are no foreign keys on purpose: rows of one trace arrive
-- in different batches, on different connections, and a refused or dropped parent must not take
-- its children with it.
--
-- Durations are milliseconds as double precision (sub-millisecond spans are common in Rust).
-- Money is numeric(10,6) US dollars, as in the spec.

CREATE SCHEMA IF NOT EXISTS observability;

CREATE TABLE observability.traces (
    id                uuid        NOT NULL,
    trace_id          char(32)    GENERATED ALWAYS AS (replace(id::text, '-', '')) STORED,
    name              text        NOT NULL,
    operation_type    text        NOT NULL,
    user_id           uuid,
    session_id        text,
    kb_id             uuid,
    started_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    duration_ms       double precision,
    status            text        NOT NULL DEFAULT 'in_progress',
    error_type        text,
    error_message     text,
    prompt_tokens     bigint,
    completion_tokens bigint,
    total_tokens      bigint,
    total_cost_usd    numeric(10, 6),
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, started_at),
    CONSTRAINT traces_status_check CHECK (status IN ('in_progress', 'success', 'error'))
);

CREATE INDEX traces_user_started_idx      ON observability.traces (user_id, started_at DESC);
CREATE INDEX traces_session_started_idx   ON observability.traces (session_id, started_at DESC);
CREATE INDEX traces_operation_started_idx ON observability.traces (operation_type, started_at DESC);
CREATE INDEX traces_status_started_idx    ON observability.traces (status, started_at DESC);

CREATE TABLE observability.spans (
    id                uuid        NOT NULL,
    trace_id          uuid        NOT NULL,
    parent_span_id    uuid,
    span_id           char(16)    GENERATED ALWAYS AS (right(replace(id::text, '-', ''), 16)) STORED,
    name              text        NOT NULL,
    span_type         text        NOT NULL,
    started_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    duration_ms       double precision,
    status            text        NOT NULL DEFAULT 'in_progress',
    error_type        text,
    error_message     text,
    -- LLM
    model             text,
    prompt_tokens     bigint,
    completion_tokens bigint,
    cost_usd          numeric(10, 6),
    cost_source       text,
    temperature       double precision,
    -- embedding
    embedding_model   text,
    vector_count      bigint,
    vector_dimensions integer,
    -- retrieval
    query_text        text,
    result_count      integer,
    top_score         double precision,
    -- parse
    file_type         text,
    file_size_bytes   bigint,
    page_count        integer,
    -- chunk
    chunk_count       integer,
    chunk_strategy    text,
    -- index
    vectors_upserted  bigint,
    collection_name   text,
    input_preview     text,
    output_preview    text,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, started_at),
    CONSTRAINT spans_status_check CHECK (status IN ('in_progress', 'success', 'error')),
    CONSTRAINT spans_cost_source_check CHECK (cost_source IN ('given', 'computed'))
);

CREATE INDEX spans_trace_started_idx ON observability.spans (trace_id, started_at);
CREATE INDEX spans_parent_idx        ON observability.spans (parent_span_id);
CREATE INDEX spans_type_started_idx  ON observability.spans (span_type, started_at DESC);
CREATE INDEX spans_model_started_idx ON observability.spans (model, started_at DESC) WHERE model IS NOT NULL;

CREATE TABLE observability.chat_messages (
    id                uuid        NOT NULL,
    trace_id          uuid        NOT NULL,
    span_id           uuid,
    session_id        text        NOT NULL,
    user_id           uuid        NOT NULL,
    kb_id             uuid        NOT NULL,
    role              text        NOT NULL,
    content           text        NOT NULL,
    turn_number       integer,
    sources           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    citations         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    prompt_tokens     bigint,
    completion_tokens bigint,
    response_time_ms  double precision,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (id, created_at)
);

CREATE INDEX chat_messages_session_turn_idx   ON observability.chat_messages (session_id, turn_number);
CREATE INDEX chat_messages_user_created_idx   ON observability.chat_messages (user_id, created_at DESC);
CREATE INDEX chat_messages_kb_created_idx     ON observability.chat_messages (kb_id, created_at DESC);
CREATE INDEX chat_messages_trace_idx          ON observability.chat_messages (trace_id);

CREATE TABLE observability.document_events (
    id                uuid        NOT NULL,
    trace_id          uuid        NOT NULL,
    span_id           uuid,
    document_id       uuid        NOT NULL,
    kb_id             uuid,
    event_type        text        NOT NULL,
    status            text        NOT NULL,
    started_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    duration_ms       double precision,
    -- parse
    extracted_pages   integer,
    extracted_chars   bigint,
    tables_found      integer,
    images_found      integer,
    -- chunk
    chunks_created    integer,
    avg_chunk_size    integer,
    -- embed
    vectors_generated bigint,
    embedding_model   text,
    -- index
    vectors_upserted  bigint,
    collection_name   text,
    error_type        text,
    error_message     text,
    retryable         boolean,
    retry_count       integer,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, started_at),
    CONSTRAINT document_events_status_check CHECK (status IN ('started', 'completed', 'failed', 'skipped'))
);

CREATE INDEX document_events_document_started_idx ON observability.document_events (document_id, started_at);
CREATE INDEX document_events_type_started_idx     ON observability.document_events (event_type, started_at DESC);
CREATE INDEX document_events_status_started_idx   ON observability.document_events (status, started_at DESC);
CREATE INDEX document_events_trace_idx            ON observability.document_events (trace_id);
