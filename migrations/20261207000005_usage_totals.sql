-- Usage totals: one row per hour (and per day) summing every trace, so that a dashboard of the
-- top users or knowledge bases gets the row of "every other key" by subtraction, total less
-- the top keys and the traces without a key, instead of summing (and shipping the latency
-- histograms of) ten thousand users' rows. Counts, tokens, cost and histogram counts subtract
-- exactly, so the other keys' row is the same as summed from their own rows.
--
-- * `dim = 'total'` rows have no key; they sum the hour's `kb` rows (every trace has one kb
--   row, its kb_id or NULL), computed whenever the hour is recorded as recomputed (a trigger on
--   `usage_rollup_hours`, fired by `refresh_usage_hour` after it wrote the hour's rows, in the
--   same transaction). The daily merge sums them like every other dim.
-- * The rollups kept before this migration get their totals here, from their own kb rows: no
--   hour needs recomputing, no day goes stale.
-- * An index on (dim, key, time) reads the few top keys' rows without the others'.

ALTER TABLE observability.usage_hourly DROP CONSTRAINT usage_hourly_dim_check,
    ADD CONSTRAINT usage_hourly_dim_check CHECK (dim IN ('span', 'kb', 'user', 'total'));
ALTER TABLE observability.usage_daily DROP CONSTRAINT usage_daily_dim_check,
    ADD CONSTRAINT usage_daily_dim_check CHECK (dim IN ('span', 'kb', 'user', 'total'));

CREATE INDEX usage_hourly_dim_key_hour_idx ON observability.usage_hourly (dim, key, hour);
CREATE INDEX usage_daily_dim_key_day_idx ON observability.usage_daily (dim, key, day);

-- Replaces the `total` rows of the rollup table `p_table` (whose time column is `p_col`) at
-- the times `p_at` with the sums of their `kb` rows: sums per time, and the histograms'
-- buckets summed per time, in one grouping (the first half has no bucket, the second no sums).
CREATE FUNCTION observability.put_usage_totals(p_table text, p_col text, p_at timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_table NOT IN ('usage_hourly', 'usage_daily') OR p_col NOT IN ('hour', 'day') THEN
        RAISE EXCEPTION 'not a usage rollup table: %.%', p_table, p_col USING ERRCODE = '22023';
    END IF;
    EXECUTE format(
        'DELETE FROM observability.%1$I WHERE dim = ''total'' AND %2$I = ANY ($1)',
        p_table, p_col) USING p_at;
    EXECUTE format(
        'INSERT INTO observability.%1$I (%2$I, dim, span_type, model, key, calls, errors,
             prompt_tokens, completion_tokens, cost_usd, lat_idx, lat_n)
         SELECT t, ''total'', NULL, NULL, NULL, sum(calls), sum(errors), sum(p), sum(c),
                sum(cost),
                coalesce(array_agg(b ORDER BY b) FILTER (WHERE b IS NOT NULL), ''{}''),
                coalesce(array_agg(f ORDER BY b) FILTER (WHERE b IS NOT NULL), ''{}'')
         FROM (
             SELECT %2$I AS t, sum(calls) AS calls, sum(errors) AS errors,
                    sum(prompt_tokens) AS p, sum(completion_tokens) AS c, sum(cost_usd) AS cost,
                    NULL::smallint AS b, NULL::bigint AS f
             FROM observability.%1$I WHERE dim = ''kb'' AND %2$I = ANY ($1)
             GROUP BY 1
             UNION ALL
             SELECT %2$I, 0, 0, 0, 0, 0, u.b, sum(u.f)::bigint
             FROM observability.%1$I r, unnest(r.lat_idx, r.lat_n) AS u(b, f)
             WHERE dim = ''kb'' AND %2$I = ANY ($1)
             GROUP BY 1, 7
         ) x
         GROUP BY t', p_table, p_col) USING p_at;
END
$$;

REVOKE EXECUTE ON FUNCTION observability.put_usage_totals(text, text, timestamptz[]) FROM PUBLIC;

-- The hour's totals, once its rows are recomputed (see above).
CREATE FUNCTION observability.usage_rollup_hour_totals() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM observability.put_usage_totals('usage_hourly', 'hour', ARRAY[NEW.hour]);
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_rollup_hour_totals AFTER INSERT OR UPDATE ON observability.usage_rollup_hours
FOR EACH ROW EXECUTE FUNCTION observability.usage_rollup_hour_totals();

-- The totals of the rollups already kept.
SELECT observability.put_usage_totals('usage_hourly', 'hour',
    ARRAY(SELECT DISTINCT hour FROM observability.usage_hourly WHERE dim = 'kb'));
SELECT observability.put_usage_totals('usage_daily', 'day',
    ARRAY(SELECT DISTINCT day FROM observability.usage_daily WHERE dim = 'kb'));
