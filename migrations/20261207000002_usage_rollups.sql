-- Usage rollups: usage per hour, by span type and model (from `spans`) and by knowledge base and
-- by user (from `traces`), so month-long dashboards read a few thousand rows instead of
-- millions of spans.
--
-- How the rollups stay exact (see README, "Usage rollups"):
-- * Every writer transaction that writes span or trace rows marks the hours of their start
--   times dirty (`mark_usage_hours`), in the same transaction as the rows: a rolled-back batch
--   marks nothing, a committed one cannot be missed, a retried one marks again (harmless).
-- * The upkeep recomputes a dirty hour, once it is closed, from the raw rows: the hour's rollup
--   rows are replaced, never added to, so nothing is counted twice however often it runs.
--   It takes the hour's mark with `FOR UPDATE SKIP LOCKED` and deletes it; a writer marking
--   the same hour holds the mark `FOR KEY SHARE` until it commits, so the recomputation either
--   waits for that writer's rows to commit (skipping the hour until then) or the writer finds
--   the mark gone and makes a new one, and the hour is recomputed again.
-- * `query::usage` reads the rollups only for hours that were recomputed and are not dirty
--   again; every other hour (the partial edges, the current hour, hours with late rows) is read
--   from the raw rows. A late span never shows stale figures.
-- * Rollup rows are partitioned by hour like the raw tables (same partition functions), so
--   retention drops a day's rollups with the day's spans, in the same transaction.

-- 1. The rollup rows. `dim` says which kind of row: 'span' rows hold spans grouped by
--    (span_type, model); 'kb' and 'user' rows hold traces grouped by kb_id or user_id in
--    `key`. Sums are numeric, so a sum over a month is exact and saturates only at read,
--    as the raw query does. Latency is a histogram of the finished calls' durations over
--    log-scale buckets of ratio 1.02 (`lat_idx`, ascending, with their counts in `lat_n`):
--    bucket i holds durations in [1.02^i, 1.02^(i+1)) ms, and a percentile read from it is
--    within 1% of the exact one; durations of 0 (or less) have bucket -32768 and read as 0.
CREATE TABLE observability.usage_hourly (
    hour              timestamptz NOT NULL,
    dim               text        NOT NULL,
    span_type         text,
    model             text,
    key               uuid,
    calls             bigint      NOT NULL,
    errors            bigint      NOT NULL,
    prompt_tokens     numeric     NOT NULL,
    completion_tokens numeric     NOT NULL,
    cost_usd          numeric     NOT NULL,
    lat_idx           smallint[]  NOT NULL,
    lat_n             bigint[]    NOT NULL,
    CONSTRAINT usage_hourly_dim_check CHECK (dim IN ('span', 'kb', 'user'))
) PARTITION BY RANGE (hour);

CREATE INDEX usage_hourly_dim_hour_idx ON observability.usage_hourly (dim, hour);
CREATE TABLE observability.usage_hourly_default PARTITION OF observability.usage_hourly DEFAULT;

-- 2. Hours whose rows were written since their last recomputation.
CREATE TABLE observability.usage_dirty (
    hour      timestamptz PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- 3. Hours recomputed at least once (an hour without rows has a row here and none in
--    usage_hourly). An hour here and not in usage_dirty is read from the rollups.
CREATE TABLE observability.usage_rollup_hours (
    hour         timestamptz PRIMARY KEY,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

-- Roles that may read spans may read the rollups: a read-only role (the web viewer's) granted
-- its SELECTs before this migration reads usage after it without a new grant. Writers need
-- nothing here: they mark hours through a SECURITY DEFINER function.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_schema = 'observability' AND table_name = 'spans'
          AND privilege_type = 'SELECT' AND grantee <> current_user
    LOOP
        EXECUTE format('GRANT SELECT ON observability.usage_hourly, observability.usage_dirty, '
                       'observability.usage_rollup_hours TO %I', g.grantee);
    END LOOP;
END
$$;

-- 4. The bucket of a duration in milliseconds (see 1.).
CREATE FUNCTION observability.latency_bucket(p_ms double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_ms <= 0 THEN -32768
        -- NaN sorts above every number in PostgreSQL: it lands in the top bucket.
        ELSE least(greatest(floor(ln(greatest(p_ms, 0.001)) / ln(1.02)), -400), 1400)
    END::smallint
$$;

-- 5. Marks the hours of `p_hours`, and those of the traces `p_traces` (whose totals the
--    writer recounted), dirty. Called by the writer last in a batch's transaction. An existing
--    mark is locked FOR KEY SHARE (writers do not wait for each other); a missing one is
--    inserted, or locked if another writer inserted it meanwhile.
CREATE FUNCTION observability.mark_usage_hours(p_hours timestamptz[], p_traces uuid[] DEFAULT '{}')
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH wanted AS (
        SELECT DISTINCT h FROM (
            SELECT unnest(p_hours) AS h
            UNION ALL
            SELECT date_trunc('hour', t.started_at, 'UTC')
            FROM observability.traces t WHERE t.id = ANY (p_traces)
        ) x WHERE h IS NOT NULL
    ), locked AS (
        SELECT d.hour FROM observability.usage_dirty d
        WHERE d.hour IN (SELECT h FROM wanted)
        ORDER BY d.hour
        FOR KEY SHARE
    )
    INSERT INTO observability.usage_dirty AS d (hour)
    SELECT h FROM wanted WHERE h NOT IN (SELECT hour FROM locked) ORDER BY h
    ON CONFLICT (hour) DO UPDATE SET marked_at = EXCLUDED.marked_at
$$;

-- 6. Marks every hour with rows in [p_from, p_to) dirty, for rows written without the writer
--    (a bulk load, a restore) and for the rows stored before this migration.
CREATE FUNCTION observability.mark_usage_range(p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH m AS (
        INSERT INTO observability.usage_dirty (hour)
        SELECT DISTINCT date_trunc('hour', started_at, 'UTC') FROM (
            SELECT started_at FROM observability.spans
            WHERE started_at >= p_from AND started_at < p_to
            UNION ALL
            SELECT started_at FROM observability.traces
            WHERE started_at >= p_from AND started_at < p_to
        ) x
        ON CONFLICT (hour) DO UPDATE SET marked_at = now()
        RETURNING 1
    )
    SELECT count(*) FROM m
$$;

-- 7. Recomputes one dirty hour that closed before p_before, newest first, and returns it
--    (NULL when none is left). One hour per call, so each call is a short transaction.
CREATE FUNCTION observability.refresh_usage_hour(p_before timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    h timestamptz;
BEGIN
    DELETE FROM observability.usage_dirty
    WHERE hour = (SELECT d.hour FROM observability.usage_dirty d
                  WHERE d.hour + interval '1 hour' <= p_before
                  ORDER BY d.hour DESC LIMIT 1
                  FOR UPDATE SKIP LOCKED)
    RETURNING hour INTO h;
    IF h IS NULL THEN
        RETURN NULL;
    END IF;
    DELETE FROM observability.usage_hourly WHERE hour = h;
    INSERT INTO observability.usage_hourly (hour, dim, span_type, model, key, calls, errors,
        prompt_tokens, completion_tokens, cost_usd, lat_idx, lat_n)
    SELECT h, 'span', span_type, model, NULL, sum(n), sum(e), sum(p), sum(c), sum(cost),
           coalesce(array_agg(b ORDER BY b) FILTER (WHERE b IS NOT NULL), '{}'),
           coalesce(array_agg(f ORDER BY b) FILTER (WHERE b IS NOT NULL), '{}')
    FROM (SELECT span_type, model, observability.latency_bucket(duration_ms) AS b,
                 count(*) AS n, count(*) FILTER (WHERE status = 'error') AS e,
                 count(duration_ms) AS f,
                 coalesce(sum(prompt_tokens), 0) AS p, coalesce(sum(completion_tokens), 0) AS c,
                 coalesce(sum(cost_usd), 0) AS cost
          FROM observability.spans
          WHERE started_at >= h AND started_at < h + interval '1 hour'
          GROUP BY 1, 2, 3) x
    GROUP BY span_type, model;
    INSERT INTO observability.usage_hourly (hour, dim, span_type, model, key, calls, errors,
        prompt_tokens, completion_tokens, cost_usd, lat_idx, lat_n)
    SELECT h, dim, NULL, NULL, key, sum(n), sum(e), sum(p), sum(c), sum(cost),
           coalesce(array_agg(b ORDER BY b) FILTER (WHERE b IS NOT NULL), '{}'),
           coalesce(array_agg(f ORDER BY b) FILTER (WHERE b IS NOT NULL), '{}')
    FROM (SELECT CASE WHEN g.by_kb THEN 'kb' ELSE 'user' END AS dim,
                 CASE WHEN g.by_kb THEN kb_id ELSE user_id END AS key,
                 observability.latency_bucket(duration_ms) AS b,
                 count(*) AS n, count(*) FILTER (WHERE status = 'error') AS e,
                 count(duration_ms) AS f,
                 coalesce(sum(prompt_tokens), 0) AS p, coalesce(sum(completion_tokens), 0) AS c,
                 coalesce(sum(total_cost_usd), 0) AS cost
          FROM observability.traces
          CROSS JOIN (VALUES (true), (false)) AS g(by_kb)
          WHERE started_at >= h AND started_at < h + interval '1 hour'
          GROUP BY 1, 2, 3) x
    GROUP BY dim, key;
    INSERT INTO observability.usage_rollup_hours (hour) VALUES (h)
    ON CONFLICT (hour) DO UPDATE SET refreshed_at = now();
    RETURN h;
END
$$;

REVOKE EXECUTE ON FUNCTION observability.refresh_usage_hour(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION observability.mark_usage_range(timestamptz, timestamptz) FROM PUBLIC;

-- 8. The partition functions learn the tables added after the first four: a table is
--    partitioned by the functions when it exists (so migrations adding tables in any order
--    share them).
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

-- 9. create_partitions over every table of partitioned_tables(); otherwise unchanged.
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

-- 10. Retention: drop_partitions drops the rollups' partitions with the others (they are in
--     partitions() now), and forgets the marks of the hours it dropped.
CREATE OR REPLACE FUNCTION observability.drop_partitions(p_before timestamptz, p_dry_run boolean DEFAULT true)
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
    IF NOT p_dry_run THEN
        DELETE FROM observability.trace_parts WHERE started_at < p_before;
        DELETE FROM observability.usage_dirty WHERE hour + interval '1 hour' <= p_before;
        DELETE FROM observability.usage_rollup_hours WHERE hour + interval '1 hour' <= p_before;
        -- Rollup rows of those hours not yet moved out of the DEFAULT partition.
        DELETE FROM observability.usage_hourly_default WHERE hour + interval '1 hour' <= p_before;
    END IF;
END
$$;

-- 11. Usage rollups for the rows already stored: their hours are dirty, and the writer's
--     upkeep (or `tracing-postgres migrate`) recomputes them.
SELECT observability.mark_usage_range('-infinity', 'infinity');
