-- create_partitions no longer deadlocks with the writer.
--
-- It took the default partitions' locks one table at a time (traces, then spans...) in SHARE
-- ROW EXCLUSIVE mode, and attaching upgraded each to ACCESS EXCLUSIVE. A writer's batch
-- inserts into spans first and traces last, so a batch holding spans_default and waiting for
-- traces_default met a maintainer holding traces_default and waiting for spans_default, and
-- PostgreSQL aborted one of them (40P01; when it was `migrate`, the migration failed).
--
-- Now every piece to make is found first; then all the default partitions with work are
-- locked in one statement, in ACCESS EXCLUSIVE mode (what attaching takes, so nothing is
-- upgraded), each try waiting at most 200 ms (under PostgreSQL's 1 s deadlock_timeout, so the
-- maintainer gives up before a deadlock is declared and the writer is never the victim) and
-- releasing what it took before the next; after 20 tries (about 6 s, as the 5 s lock_timeout
-- before) it fails with 55P03 and the next upkeep tries again. The pieces, their names and
-- the rows returned are unchanged.

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
    i integer;
    gap_table text[] := ARRAY[]::text[];
    gap_lo timestamptz[] := ARRAY[]::timestamptz[];
    gap_hi timestamptz[] := ARRAY[]::timestamptz[];
    defaults text;
    tries integer := 0;
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
    -- First the pieces no partition covers yet, of every table, only reading (the DEFAULT
    -- partitions' ACCESS SHARE locks stop no writer).
    FOR t IN SELECT x.table_name FROM observability.partitioned_tables() x LOOP
        col := observability.partition_column(t);
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
                    gap_table := gap_table || t;
                    gap_lo := gap_lo || cur;
                    gap_hi := gap_hi || p.range_from;
                END IF;
                cur := greatest(cur, p.range_to);
            END LOOP;
            IF cur < hi THEN
                gap_table := gap_table || t;
                gap_lo := gap_lo || cur;
                gap_hi := gap_hi || hi;
            END IF;
        END LOOP;
    END LOOP;
    IF coalesce(array_length(gap_table, 1), 0) = 0 THEN
        RETURN;
    END IF;
    -- Then every default partition with work, locked at once and in the mode attaching takes
    -- (so no lock is upgraded later): no row may reach a default partition between moving
    -- its rows out and attaching. A writer's batch holds some of these tables while it
    -- waits for others, so waiting here while holding some would deadlock with it: each try
    -- waits a short while, gives up everything it took, and tries again after a pause.
    SELECT string_agg(format('observability.%I', d.t || '_default'), ', ' ORDER BY d.t)
    INTO defaults
    FROM (SELECT DISTINCT x AS t FROM unnest(gap_table) x) d;
    PERFORM set_config('lock_timeout', '200ms', true);
    LOOP
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', defaults);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            tries := tries + 1;
            IF tries >= 20 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.01 * tries);
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', '5s', true);
    -- Each piece: made as a plain table, filled from the default partition, attached.
    FOR i IN 1 .. array_length(gap_table, 1) LOOP
        -- A table's pieces are next to each other: its columns are looked up once.
        IF i = 1 OR gap_table[i] <> t THEN
            t := gap_table[i];
            col := observability.partition_column(t);
            SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
            FROM pg_attribute a
            WHERE a.attrelid = format('observability.%I', t)::regclass
              AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
        END IF;
        lo := gap_lo[i];
        hi := gap_hi[i];
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
END
$$;
