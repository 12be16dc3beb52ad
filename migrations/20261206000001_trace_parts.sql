-- One trace across processes (W3C `traceparent`): each process that takes part in a trace
-- writes its share of the trace's usage here, once, and the trace's row holds the sum of the
-- shares. A trace's origin writes its share (part_id = the trace id) only when it sent its
-- context out; a process that joined a remote trace writes one per top span of its own (or,
-- for explicit calls, one per call that reported usage). The writer inserts a part with
-- ON CONFLICT DO NOTHING, so a retried batch counts nothing twice, then sets the trace's
-- totals to the sum of its parts in the same transaction, under a transaction-scoped advisory
-- lock per trace: two writers meeting on one trace see each other's committed part whichever
-- commits first.
--
-- Not partitioned: only traces that crossed a process have parts, a few rows each. Retention
-- (`tracing-postgres prune`, `partitions::prune`) deletes the parts older than its cutoff.
CREATE TABLE observability.trace_parts (
    trace_id          uuid        NOT NULL,
    part_id           uuid        NOT NULL,
    started_at        timestamptz NOT NULL,
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    completion_tokens bigint      NOT NULL DEFAULT 0,
    cost_usd          numeric,
    PRIMARY KEY (trace_id, part_id)
);

CREATE INDEX trace_parts_started_idx ON observability.trace_parts (started_at);

-- Retention: parts go with the traces they count. drop_partitions now also deletes the parts
-- started before its cutoff (not in a dry run); its signature, owner and grants are kept.
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
    END IF;
END
$$;
