-- Time partitions: the four tables become range-partitioned by their time column, with a
-- DEFAULT partition each, so a row whose day has no partition yet is kept, never refused.
--
-- Partitions are created ahead of need by `observability.create_partitions` (the writer calls
-- it at start and every hour; `tracing-postgres migrate` calls it too) and dropped whole by
-- `observability.drop_partitions` for retention: never DELETE, which bloats.
--
-- Both functions are SECURITY DEFINER: creating or dropping a partition needs ownership of the
-- table, and a writer role should not own the tables. EXECUTE is revoked from PUBLIC; grant
-- `create_partitions` to the writer role so it can keep partitions ahead, and
-- `drop_partitions` only to a role that may delete data.
--
-- Partition bounds are in UTC. A partition is named after its table and the first day it
-- covers (`spans_p20261127`); its length is a day, a week (from Monday) or a month.

-- 1. The tables of the first migration are renamed away, their names freed.
ALTER TABLE observability.traces          RENAME TO traces_unpartitioned;
ALTER TABLE observability.spans           RENAME TO spans_unpartitioned;
ALTER TABLE observability.chat_messages   RENAME TO chat_messages_unpartitioned;
ALTER TABLE observability.document_events RENAME TO document_events_unpartitioned;
ALTER TABLE observability.traces_unpartitioned          RENAME CONSTRAINT traces_pkey          TO traces_unpartitioned_pkey;
ALTER TABLE observability.spans_unpartitioned           RENAME CONSTRAINT spans_pkey           TO spans_unpartitioned_pkey;
ALTER TABLE observability.chat_messages_unpartitioned   RENAME CONSTRAINT chat_messages_pkey   TO chat_messages_unpartitioned_pkey;
ALTER TABLE observability.document_events_unpartitioned RENAME CONSTRAINT document_events_pkey TO document_events_unpartitioned_pkey;
DROP INDEX observability.traces_user_started_idx, observability.traces_session_started_idx,
    observability.traces_operation_started_idx, observability.traces_status_started_idx,
    observability.spans_trace_started_idx, observability.spans_parent_idx,
    observability.spans_type_started_idx, observability.spans_model_started_idx,
    observability.chat_messages_session_turn_idx, observability.chat_messages_user_created_idx,
    observability.chat_messages_kb_created_idx, observability.chat_messages_trace_idx,
    observability.document_events_document_started_idx,
    observability.document_events_type_started_idx,
    observability.document_events_status_started_idx, observability.document_events_trace_idx;

-- 2. The partitioned tables: the same columns and checks. The keys of the three tables below
--    `traces` lead with `trace_id`: a trace's spans, messages and events are found by their
--    key (no separate trace index to maintain), and every key holds the trace id, as a
--    distributed PostgreSQL (Citus) needs to shard the four tables together by trace (see
--    docs/scale-out.md).
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
) PARTITION BY RANGE (started_at);

CREATE INDEX traces_started_idx           ON observability.traces (started_at DESC);
CREATE INDEX traces_user_started_idx      ON observability.traces (user_id, started_at DESC);
CREATE INDEX traces_session_started_idx   ON observability.traces (session_id, started_at DESC);
CREATE INDEX traces_kb_started_idx        ON observability.traces (kb_id, started_at DESC);
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
    model             text,
    prompt_tokens     bigint,
    completion_tokens bigint,
    cost_usd          numeric(10, 6),
    cost_source       text,
    temperature       double precision,
    embedding_model   text,
    vector_count      bigint,
    vector_dimensions integer,
    query_text        text,
    result_count      integer,
    top_score         double precision,
    file_type         text,
    file_size_bytes   bigint,
    page_count        integer,
    chunk_count       integer,
    chunk_strategy    text,
    vectors_upserted  bigint,
    collection_name   text,
    input_preview     text,
    output_preview    text,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (trace_id, id, started_at),
    CONSTRAINT spans_status_check CHECK (status IN ('in_progress', 'success', 'error')),
    CONSTRAINT spans_cost_source_check CHECK (cost_source IN ('given', 'computed'))
) PARTITION BY RANGE (started_at);

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
    PRIMARY KEY (trace_id, id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX chat_messages_session_turn_idx ON observability.chat_messages (session_id, turn_number, created_at);
CREATE INDEX chat_messages_user_created_idx ON observability.chat_messages (user_id, created_at DESC);
CREATE INDEX chat_messages_kb_created_idx   ON observability.chat_messages (kb_id, created_at DESC);

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
    extracted_pages   integer,
    extracted_chars   bigint,
    tables_found      integer,
    images_found      integer,
    chunks_created    integer,
    avg_chunk_size    integer,
    vectors_generated bigint,
    embedding_model   text,
    vectors_upserted  bigint,
    collection_name   text,
    error_type        text,
    error_message     text,
    retryable         boolean,
    retry_count       integer,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (trace_id, id, started_at),
    CONSTRAINT document_events_status_check CHECK (status IN ('started', 'completed', 'failed', 'skipped'))
) PARTITION BY RANGE (started_at);

CREATE INDEX document_events_document_started_idx ON observability.document_events (document_id, started_at);
CREATE INDEX document_events_type_started_idx     ON observability.document_events (event_type, started_at DESC);
CREATE INDEX document_events_status_started_idx   ON observability.document_events (status, started_at DESC);

-- 3. The catch-all partitions.
CREATE TABLE observability.traces_default          PARTITION OF observability.traces          DEFAULT;
CREATE TABLE observability.spans_default           PARTITION OF observability.spans           DEFAULT;
CREATE TABLE observability.chat_messages_default   PARTITION OF observability.chat_messages   DEFAULT;
CREATE TABLE observability.document_events_default PARTITION OF observability.document_events DEFAULT;

-- 4. Rows written under the first migration move in (to the default partitions; the first
--    `create_partitions` moves them on into partitions of their days).
INSERT INTO observability.traces (id, name, operation_type, user_id, session_id, kb_id,
    started_at, ended_at, duration_ms, status, error_type, error_message, prompt_tokens,
    completion_tokens, total_tokens, total_cost_usd, metadata)
SELECT id, name, operation_type, user_id, session_id, kb_id, started_at, ended_at, duration_ms,
    status, error_type, error_message, prompt_tokens, completion_tokens, total_tokens,
    total_cost_usd, metadata
FROM observability.traces_unpartitioned;

INSERT INTO observability.spans (id, trace_id, parent_span_id, name, span_type, started_at,
    ended_at, duration_ms, status, error_type, error_message, model, prompt_tokens,
    completion_tokens, cost_usd, cost_source, temperature, embedding_model, vector_count,
    vector_dimensions, query_text, result_count, top_score, file_type, file_size_bytes,
    page_count, chunk_count, chunk_strategy, vectors_upserted, collection_name, input_preview,
    output_preview, metadata)
SELECT id, trace_id, parent_span_id, name, span_type, started_at, ended_at, duration_ms, status,
    error_type, error_message, model, prompt_tokens, completion_tokens, cost_usd, cost_source,
    temperature, embedding_model, vector_count, vector_dimensions, query_text, result_count,
    top_score, file_type, file_size_bytes, page_count, chunk_count, chunk_strategy,
    vectors_upserted, collection_name, input_preview, output_preview, metadata
FROM observability.spans_unpartitioned;

INSERT INTO observability.chat_messages SELECT * FROM observability.chat_messages_unpartitioned;
INSERT INTO observability.document_events SELECT * FROM observability.document_events_unpartitioned;

DROP TABLE observability.traces_unpartitioned, observability.spans_unpartitioned,
    observability.chat_messages_unpartitioned, observability.document_events_unpartitioned;

-- 5. Which column partitions each table.
CREATE FUNCTION observability.partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE p_table
        WHEN 'traces' THEN 'started_at'
        WHEN 'spans' THEN 'started_at'
        WHEN 'chat_messages' THEN 'created_at'
        WHEN 'document_events' THEN 'started_at'
    END
$$;

-- 6. The partitions of the four tables and their bounds (NULL for a DEFAULT partition, and for
--    the open end of a MINVALUE / MAXVALUE partition someone made by hand).
CREATE FUNCTION observability.partitions()
RETURNS TABLE (table_name text, partition_name text, range_from timestamptz,
               range_to timestamptz, is_default boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
    SELECT parent.relname::text,
           child.relname::text,
           substring(b.bound FROM $r$FROM \('([^']*)'\)$r$)::timestamptz,
           substring(b.bound FROM $r$TO \('([^']*)'\)$r$)::timestamptz,
           b.bound = 'DEFAULT'
    FROM pg_inherits i
    JOIN pg_class parent ON parent.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = parent.relnamespace
    JOIN pg_class child ON child.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT pg_get_expr(child.relpartbound, child.oid) AS bound) b
    WHERE n.nspname = 'observability'
      AND parent.relname IN ('traces', 'spans', 'chat_messages', 'document_events')
      AND child.relkind IN ('r', 'p')
      -- A partition dropped meanwhile has no bound any more.
      AND b.bound IS NOT NULL
    ORDER BY 1, 3 NULLS FIRST
$$;

-- 7. Creates the missing partitions of `p_step` ('day', 'week' or 'month') covering
--    [p_from, p_to) for each table, and a partition for every period that has rows waiting in
--    a DEFAULT partition (moving them in). A period that overlaps an existing partition (made
--    with another step) is left alone. Returns the partitions it created.
--
--    Each partition is made as a plain table and attached, which locks the parent only in
--    SHARE UPDATE EXCLUSIVE mode: writes go on meanwhile. `lock_timeout` keeps it from queueing
--    behind a long query and blocking everyone behind itself; it fails instead, to be retried.
CREATE FUNCTION observability.create_partitions(p_from timestamptz, p_to timestamptz,
                                                p_step text DEFAULT 'day')
RETURNS TABLE (table_name text, partition_name text, range_from timestamptz,
               range_to timestamptz, rows_moved bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    t text;
    col text;
    cols text;
    lo timestamptz;
    hi timestamptz;
    starts timestamptz[];
    step interval;
    moved bigint;
    name text;
    cur timestamptz;
    p record;
    gaps timestamptz[];
    i integer;
BEGIN
    IF p_step NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'partition step must be day, week or month, not %', p_step
            USING ERRCODE = '22023';
    END IF;
    IF p_to - p_from > interval '3700 days' THEN
        RAISE EXCEPTION 'refusing to create partitions over more than ten years'
            USING ERRCODE = '22023';
    END IF;
    step := ('1 ' || p_step)::interval;
    -- One maintainer at a time; a second waits, then finds the work done.
    PERFORM pg_advisory_xact_lock(hashtext('tracing-postgres/partitions'));
    FOREACH t IN ARRAY ARRAY['traces', 'spans', 'chat_messages', 'document_events'] LOOP
        col := observability.partition_column(t);
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a
        WHERE a.attrelid = format('observability.%I', t)::regclass
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
        -- The periods asked for, and those of rows waiting in the default partition.
        EXECUTE format(
            'SELECT array_agg(DISTINCT s ORDER BY s) FROM (
                 SELECT generate_series(date_trunc(%L, $1), $2 - interval ''1 microsecond'', %L::interval) AS s
                 UNION
                 SELECT date_trunc(%L, %I) FROM observability.%I
             ) x WHERE s IS NOT NULL',
            p_step, step, p_step, col, t || '_default')
        INTO starts USING p_from, p_to;
        CONTINUE WHEN starts IS NULL;
        gaps := ARRAY[]::timestamptz[];
        FOREACH lo IN ARRAY starts LOOP
            hi := lo + step;
            -- The pieces of [lo, hi) no partition covers yet (all of it, unless partitions
            -- made with another step overlap it).
            cur := lo;
            FOR p IN
                SELECT coalesce(x.range_from, '-infinity') AS range_from,
                       coalesce(x.range_to, 'infinity') AS range_to
                FROM observability.partitions() x
                WHERE x.table_name = t AND NOT x.is_default
                  AND coalesce(x.range_from, '-infinity') < hi
                  AND coalesce(x.range_to, 'infinity') > lo
                ORDER BY 1
            LOOP
                IF p.range_from > cur THEN
                    gaps := gaps || ARRAY[cur, p.range_from];
                END IF;
                cur := greatest(cur, p.range_to);
            END LOOP;
            IF cur < hi THEN
                gaps := gaps || ARRAY[cur, hi];
            END IF;
        END LOOP;
        -- No row may reach the default partition between moving its rows out and attaching
        -- (the attach would fail): hold off inserts into it, briefly, when there is work.
        IF coalesce(array_length(gaps, 1), 0) > 0 THEN
            EXECUTE format('LOCK TABLE observability.%I IN SHARE ROW EXCLUSIVE MODE',
                t || '_default');
        END IF;
        -- Each piece: made as a plain table, filled from the default partition, attached.
        FOR i IN 1 .. coalesce(array_length(gaps, 1), 0) BY 2 LOOP
            lo := gaps[i];
            hi := gaps[i + 1];
            name := t || '_p' || to_char(lo, 'YYYYMMDD');
            EXECUTE format(
                'CREATE TABLE observability.%I (LIKE observability.%I INCLUDING DEFAULTS
                     INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)', name, t);
            -- The bound as a constraint first, so attaching needs no scan to prove it.
            EXECUTE format(
                'ALTER TABLE observability.%I ADD CONSTRAINT %I CHECK (%I >= %L AND %I < %L)',
                name, name || '_bound', col, lo, col, hi);
            EXECUTE format(
                'WITH m AS (DELETE FROM observability.%I WHERE %I >= $1 AND %I < $2 RETURNING %s)
                 INSERT INTO observability.%I (%s) SELECT %s FROM m',
                t || '_default', col, col, cols, name, cols, cols)
            USING lo, hi;
            GET DIAGNOSTICS moved = ROW_COUNT;
            EXECUTE format(
                'ALTER TABLE observability.%I ATTACH PARTITION observability.%I
                     FOR VALUES FROM (%L) TO (%L)', t, name, lo, hi);
            EXECUTE format('ALTER TABLE observability.%I DROP CONSTRAINT %I',
                name, name || '_bound');
            table_name := t;
            partition_name := name;
            range_from := lo;
            range_to := hi;
            rows_moved := moved;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;

-- 8. Drops every partition whose whole range ends at or before p_before (never a DEFAULT
--    partition), or with p_dry_run only lists them. Retention by dropping whole partitions:
--    no DELETE, no bloat, no vacuum debt.
CREATE FUNCTION observability.drop_partitions(p_before timestamptz, p_dry_run boolean DEFAULT true)
RETURNS TABLE (table_name text, partition_name text, range_from timestamptz,
               range_to timestamptz, rows_estimate bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    p record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tracing-postgres/partitions'));
    FOR p IN
        SELECT x.table_name, x.partition_name, x.range_from, x.range_to,
               greatest(c.reltuples, 0)::bigint AS est
        FROM observability.partitions() x
        JOIN pg_class c ON c.oid = format('observability.%I', x.partition_name)::regclass
        WHERE NOT x.is_default AND x.range_to <= p_before
        ORDER BY x.range_from, x.table_name
    LOOP
        IF NOT p_dry_run THEN
            EXECUTE format('DROP TABLE observability.%I', p.partition_name);
        END IF;
        table_name := p.table_name;
        partition_name := p.partition_name;
        range_from := p.range_from;
        range_to := p.range_to;
        rows_estimate := p.est;
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION observability.create_partitions(timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION observability.drop_partitions(timestamptz, boolean) FROM PUBLIC;
