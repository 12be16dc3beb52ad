-- Scores and feedback: a judgement of a trace, a span or a chat message (a user's thumbs-down,
-- a model's faithfulness grade, a rule's check), written by the writer like the other rows.
--
-- * No foreign key, on purpose: a score often arrives long after its trace (a click a minute
--   later, an evaluation job at night, in another process) and may even arrive before it (the
--   trace written by another process, still queued there). A score of a trace that is not
--   stored is kept; the read side joins what is there.
-- * One value column per data type, the others NULL (the check says which): numeric values
--   stay numbers to average, booleans stay booleans, categories stay text. NaN and infinities
--   are refused by the client before queueing; the check refuses them from anyone else.
-- * Insert-only, an id per score made by the client: a retried batch inserts with
--   ON CONFLICT DO NOTHING on the key and cannot store a score twice.
-- * Range-partitioned by `created_at` like the other tables, so retention drops scores with
--   the partitions of their day; the key leads with `trace_id`, so a trace's scores are found
--   by the key and the table shards with the others (docs/scale-out.md).
CREATE TABLE observability.scores (
    id            uuid             NOT NULL,
    trace_id      uuid             NOT NULL,
    span_id       uuid,
    message_id    uuid,
    name          text             NOT NULL,
    data_type     text             NOT NULL,
    value_numeric double precision,
    value_bool    boolean,
    value_text    text,
    comment       text,
    source        text             NOT NULL,
    author        text,
    created_at    timestamptz      NOT NULL,
    PRIMARY KEY (trace_id, id, created_at),
    CONSTRAINT scores_data_type_check CHECK (data_type IN ('numeric', 'boolean', 'categorical')),
    CONSTRAINT scores_source_check CHECK (source IN ('user', 'model', 'rule', 'api')),
    CONSTRAINT scores_value_check CHECK (
        CASE data_type
            WHEN 'numeric' THEN value_numeric IS NOT NULL AND value_bool IS NULL
                AND value_text IS NULL
                AND value_numeric NOT IN ('NaN', 'Infinity', '-Infinity')
            WHEN 'boolean' THEN value_bool IS NOT NULL AND value_numeric IS NULL
                AND value_text IS NULL
            ELSE value_text IS NOT NULL AND value_numeric IS NULL AND value_bool IS NULL
        END)
) PARTITION BY RANGE (created_at);

CREATE INDEX scores_span_idx         ON observability.scores (span_id) WHERE span_id IS NOT NULL;
CREATE INDEX scores_message_idx      ON observability.scores (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX scores_name_created_idx ON observability.scores (name, created_at);
CREATE TABLE observability.scores_default PARTITION OF observability.scores DEFAULT;

-- Roles get on `scores` what they hold on `spans`: a writer granted its privileges table by
-- table (or by `ON ALL TABLES`, which covers only the tables of that day) keeps writing every
-- table after this migration, instead of retrying until an operator grants the new one.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT grantee, string_agg(privilege_type, ', ') AS privileges
        FROM information_schema.role_table_grants
        WHERE table_schema = 'observability' AND table_name = 'spans'
          AND privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
          AND grantee <> current_user
        GROUP BY grantee
    LOOP
        EXECUTE format('GRANT %s ON observability.scores TO %I', g.privileges, g.grantee);
    END LOOP;
END
$$;

-- The partition functions learn the tables added after the first four: a table is
-- partitioned by the functions when it exists. These definitions are the same, word for word,
-- as those of 20261207000002_usage_rollups.sql (which adds `usage_hourly`): whichever of the
-- two migrations a database runs last (a database migrated from a branch with only one of
-- them runs the other later), the functions end up the same.
CREATE OR REPLACE FUNCTION observability.partitioned_tables()
RETURNS TABLE (table_name text, column_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t, c
    FROM (VALUES (1, 'traces', 'started_at'), (2, 'spans', 'started_at'),
                 (3, 'chat_messages', 'created_at'), (4, 'document_events', 'started_at'),
                 (5, 'scores', 'created_at'), (6, 'usage_hourly', 'hour')) AS v(o, t, c)
    WHERE to_regclass(format('observability.%I', t)) IS NOT NULL
    ORDER BY o
$$;

CREATE OR REPLACE FUNCTION observability.partition_column(p_table text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT column_name FROM observability.partitioned_tables() WHERE table_name = p_table
$$;

CREATE OR REPLACE FUNCTION observability.partitions()
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
      AND parent.relname IN (SELECT t.table_name FROM observability.partitioned_tables() t)
      AND child.relkind IN ('r', 'p')
      AND b.bound IS NOT NULL
    ORDER BY 1, 3 NULLS FIRST
$$;

-- create_partitions over every table of partitioned_tables(); otherwise unchanged.
CREATE OR REPLACE FUNCTION observability.create_partitions(p_from timestamptz, p_to timestamptz,
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
    FOR t IN SELECT x.table_name FROM observability.partitioned_tables() x LOOP
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
