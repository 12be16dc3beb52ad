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

-- The partition functions learn this table in the next migration
-- (20261207000002_usage_rollups.sql, `observability.partitioned_tables`), which runs in the
-- same `migrate`: until then its rows wait in the DEFAULT partition, as any row may.
