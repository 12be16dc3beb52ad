-- The writer's mark of a batch's hours (see `usage_rollups`) in PL/pgSQL, with the same
-- locking. The SQL version was planned afresh on every call, with a lookup of the recounted
-- traces over every partition of `traces` even when there were none: about 1 ms per batch,
-- 8% of ingest. PL/pgSQL keeps its plans for the session, and looks the traces up only when
-- the batch recounted some.
CREATE OR REPLACE FUNCTION observability.mark_usage_hours(p_hours timestamptz[], p_traces uuid[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hours  timestamptz[] := coalesce(p_hours, '{}');
    v_locked timestamptz[];
BEGIN
    IF cardinality(p_traces) > 0 THEN
        v_hours := v_hours || ARRAY(
            SELECT date_trunc('hour', t.started_at, 'UTC')
            FROM observability.traces t WHERE t.id = ANY (p_traces));
    END IF;
    IF cardinality(v_hours) = 0 THEN
        RETURN;
    END IF;
    -- Existing marks: locked FOR KEY SHARE, so writers never wait for each other and the
    -- upkeep (FOR UPDATE SKIP LOCKED) cannot take them before this transaction ends.
    SELECT array_agg(l.hour) INTO v_locked FROM (
        SELECT d.hour FROM observability.usage_dirty d
        WHERE d.hour = ANY (v_hours)
        ORDER BY d.hour
        FOR KEY SHARE
    ) l;
    -- Missing ones: inserted; one another writer (or the upkeep) made or took since the
    -- statement above is inserted or updated, which locks it too.
    INSERT INTO observability.usage_dirty AS d (hour)
    SELECT DISTINCT h FROM unnest(v_hours) AS h
    WHERE h IS NOT NULL AND NOT (h = ANY (coalesce(v_locked, '{}')))
    ORDER BY h
    ON CONFLICT (hour) DO UPDATE SET marked_at = EXCLUDED.marked_at;
END
$$;
