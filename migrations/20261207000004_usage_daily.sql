-- Daily usage rollups: one row per day and key where the hourly ones hold up to 24, so a month
-- by knowledge base or user reads 30 rows per key instead of 720 (or 33,000 traces a day).
--
-- * `usage_daily` is computed by the upkeep from the hourly rollups of a day whose 24 hours
--   are all recomputed and none is dirty; never from the raw rows, never incremented.
-- * Every recomputation of an hour gives its `usage_rollup_hours` row a new `version` (a
--   sequence: versions only grow). A day's rollup records the sum of its 24 hours' versions
--   as read *before* the hourly rows it merged: an hour recomputed since (or while) the day
--   was merged makes the sums differ, and reads then use the hours again until the day is
--   merged anew. So a day's rows are read only when they equal its hours', which equal the
--   raw rows (see `usage_rollups`).
-- * Partitioned like the other tables (`partitioned_tables`), so retention drops a day's
--   daily rollup with its rows.

CREATE TABLE observability.usage_daily (
    day               timestamptz NOT NULL,
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
    CONSTRAINT usage_daily_dim_check CHECK (dim IN ('span', 'kb', 'user'))
) PARTITION BY RANGE (day);

CREATE INDEX usage_daily_dim_day_idx ON observability.usage_daily (dim, day);
CREATE TABLE observability.usage_daily_default PARTITION OF observability.usage_daily DEFAULT;

-- Days merged, with the sum of their hours' versions at the time.
CREATE TABLE observability.usage_rollup_days (
    day           timestamptz PRIMARY KEY,
    hours_version numeric     NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE observability.usage_rollup_version;
ALTER TABLE observability.usage_rollup_hours
    ADD COLUMN version bigint NOT NULL DEFAULT nextval('observability.usage_rollup_version');

-- A new version on every recomputation of an hour (the refresh upserts its row).
CREATE FUNCTION observability.usage_rollup_hour_version() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.version := nextval('observability.usage_rollup_version');
    RETURN NEW;
END
$$;

CREATE TRIGGER usage_rollup_hour_version BEFORE INSERT OR UPDATE ON observability.usage_rollup_hours
FOR EACH ROW EXECUTE FUNCTION observability.usage_rollup_hour_version();

-- Readers of the hourly rollups may read the daily ones.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_schema = 'observability' AND table_name = 'usage_hourly'
          AND privilege_type = 'SELECT' AND grantee <> current_user
    LOOP
        EXECUTE format('GRANT SELECT ON observability.usage_daily, '
                       'observability.usage_rollup_days TO %I', g.grantee);
    END LOOP;
END
$$;

-- Merges the newest day whose 24 hours are recomputed and clean and whose daily rollup is
-- missing or older than one of its hours; returns it (NULL when none is left). One day per
-- call, so each call is a short transaction.
CREATE FUNCTION observability.refresh_usage_day()
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    d timestamptz;
    v numeric;
BEGIN
    -- One merger at a time: two merging the same day would both insert its rows.
    PERFORM pg_advisory_xact_lock(hashtext('tracing-postgres/usage_daily'));
    -- The versions first, the hourly rows after: an hour recomputed in between leaves the
    -- day's sum behind its hours', so the day is not read and is merged again.
    SELECT h.day, h.v INTO d, v
    FROM (SELECT date_trunc('day', r.hour) AS day, count(*) AS n, sum(r.version) AS v
          FROM observability.usage_rollup_hours r
          GROUP BY 1) h
    LEFT JOIN observability.usage_rollup_days x ON x.day = h.day
    WHERE h.n = 24
      AND (x.day IS NULL OR x.hours_version <> h.v)
      AND NOT EXISTS (SELECT 1 FROM observability.usage_dirty m
                      WHERE m.hour >= h.day AND m.hour < h.day + interval '1 day')
    ORDER BY h.day DESC
    LIMIT 1;
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    DELETE FROM observability.usage_daily WHERE day = d;
    -- Sums per key, and the histograms' buckets per key summed, in one grouping: the first
    -- half has no bucket, the second no sums.
    INSERT INTO observability.usage_daily (day, dim, span_type, model, key, calls, errors,
        prompt_tokens, completion_tokens, cost_usd, lat_idx, lat_n)
    SELECT d, dim, span_type, model, key, sum(calls), sum(errors), sum(p), sum(c), sum(cost),
           coalesce(array_agg(b ORDER BY b) FILTER (WHERE b IS NOT NULL), '{}'),
           coalesce(array_agg(f ORDER BY b) FILTER (WHERE b IS NOT NULL), '{}')
    FROM (
        SELECT dim, span_type, model, key, sum(calls) AS calls, sum(errors) AS errors,
               sum(prompt_tokens) AS p, sum(completion_tokens) AS c, sum(cost_usd) AS cost,
               NULL::smallint AS b, NULL::bigint AS f
        FROM observability.usage_hourly
        WHERE hour >= d AND hour < d + interval '1 day'
        GROUP BY 1, 2, 3, 4
        UNION ALL
        SELECT dim, span_type, model, key, 0, 0, 0, 0, 0, u.b, sum(u.f)::bigint
        FROM observability.usage_hourly h, unnest(h.lat_idx, h.lat_n) AS u(b, f)
        WHERE hour >= d AND hour < d + interval '1 day'
        GROUP BY 1, 2, 3, 4, 10
    ) x
    GROUP BY dim, span_type, model, key;
    INSERT INTO observability.usage_rollup_days (day, hours_version) VALUES (d, v)
    ON CONFLICT (day) DO UPDATE SET hours_version = EXCLUDED.hours_version, refreshed_at = now();
    RETURN d;
END
$$;

REVOKE EXECUTE ON FUNCTION observability.refresh_usage_day() FROM PUBLIC;

-- The partition functions learn the daily rollups.
CREATE OR REPLACE FUNCTION observability.partitioned_tables()
RETURNS TABLE (table_name text, column_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t, c
    FROM (VALUES (1, 'traces', 'started_at'), (2, 'spans', 'started_at'),
                 (3, 'chat_messages', 'created_at'), (4, 'document_events', 'started_at'),
                 (5, 'scores', 'created_at'), (6, 'usage_hourly', 'hour'),
                 (7, 'usage_daily', 'day')) AS v(o, t, c)
    WHERE to_regclass(format('observability.%I', t)) IS NOT NULL
    ORDER BY o
$$;

-- Partitions of the daily rollups for the periods the hourly ones have.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT x.range_from, x.range_to FROM observability.partitions() x
        WHERE x.table_name = 'usage_hourly' AND NOT x.is_default
    LOOP
        PERFORM observability.create_partitions(p.range_from, p.range_to,
            CASE WHEN p.range_to - p.range_from >= interval '28 days' THEN 'month'
                 WHEN p.range_to - p.range_from >= interval '7 days' THEN 'week'
                 ELSE 'day' END);
    END LOOP;
END
$$;
