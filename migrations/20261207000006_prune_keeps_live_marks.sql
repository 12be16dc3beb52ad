-- Retention forgets the usage marks only of hours whose raw rows are gone.
--
-- drop_partitions drops whole partitions: with a cut inside a partition (`prune --older-than
-- 27d` at noon drops the days before, not the morning of the day the cut falls in), the rows of
-- the hours before the cut stay. The previous version still deleted those hours' marks:
-- * their rollups were no longer read (correct, but that day was read from the raw rows for
--   as long as it was kept);
-- * worse, a dirty mark deleted for an hour still rolled up made its stale rollup read again.
-- Now the marks (dirty, rolled up, merged days) are forgotten below the floor only: the start
-- of the oldest partition of traces or spans left, or of their oldest row in a DEFAULT
-- partition, and never above the cut.
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
    v_floor timestamptz;
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
        SELECT least(p_before,
                     (SELECT min(coalesce(x.range_from, '-infinity'))
                      FROM observability.partitions() x
                      WHERE x.table_name IN ('traces', 'spans') AND NOT x.is_default),
                     (SELECT min(started_at) FROM observability.traces_default),
                     (SELECT min(started_at) FROM observability.spans_default))
        INTO v_floor;
        DELETE FROM observability.usage_dirty WHERE hour + interval '1 hour' <= v_floor;
        DELETE FROM observability.usage_rollup_hours WHERE hour + interval '1 hour' <= v_floor;
        DELETE FROM observability.usage_rollup_days WHERE day + interval '1 day' <= v_floor;
        -- Rollup rows of those times not yet moved out of the DEFAULT partitions.
        DELETE FROM observability.usage_hourly_default WHERE hour + interval '1 hour' <= v_floor;
        DELETE FROM observability.usage_daily_default WHERE day + interval '1 day' <= v_floor;
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION observability.drop_partitions(timestamptz, boolean) FROM PUBLIC;
