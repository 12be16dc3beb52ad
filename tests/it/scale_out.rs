//! `docs/scale-out.md` stays true to the migrations: its SQL runs against a migrated database,
//! with a stand-in for Citus's `create_distributed_table` that enforces Citus's rule (the
//! distribution column is in every primary key and unique index, and co-located tables are
//! distributed by columns of one type).

use tracing_postgres_test_support as common;

use common::fresh_db;
use sqlx::{AssertSqlSafe, Executor};

/// The stand-in: the checks Citus makes before distributing a table, and a record of what was
/// distributed.
const STAND_IN: &str = r#"
CREATE TABLE public.distributed (tbl regclass PRIMARY KEY, col text, coltype regtype);
CREATE FUNCTION public.create_distributed_table(tbl regclass, col text,
                                                colocate_with text DEFAULT 'default')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t regtype;
    bad text;
    other regtype;
BEGIN
    SELECT a.atttypid::regtype INTO t FROM pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped;
    IF t IS NULL THEN
        RAISE EXCEPTION 'column % of % does not exist', col, tbl;
    END IF;
    SELECT string_agg(i.indexrelid::regclass::text, ', ') INTO bad
    FROM pg_index i
    WHERE i.indrelid = tbl AND i.indisunique
      AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = tbl AND a.attname = col
                        AND a.attnum = ANY (i.indkey::int2[]));
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'cannot create constraint on %: unique index % does not include the distribution column %',
            tbl, bad, col;
    END IF;
    IF colocate_with <> 'default' THEN
        SELECT d.coltype INTO other FROM public.distributed d WHERE d.tbl = colocate_with::regclass;
        IF other IS NULL THEN
            RAISE EXCEPTION '% is not distributed', colocate_with;
        END IF;
        IF other <> t THEN
            RAISE EXCEPTION 'cannot colocate % (%) with % (%)', tbl, t, colocate_with, other;
        END IF;
    END IF;
    INSERT INTO public.distributed VALUES (tbl, col, t);
END
$$;
"#;

/// The ```sql blocks of the note.
fn sql_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sql") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[tokio::test]
async fn the_scale_out_note_distributes_all_five_tables_of_the_migrated_schema() {
    let doc = include_str!("../../docs/scale-out.md");
    let blocks = sql_blocks(doc);
    assert!(!blocks.is_empty(), "the note has SQL");
    let db = fresh_db().await;
    db.pool.execute(STAND_IN).await.unwrap();
    for sql in &blocks {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }
    let distributed: Vec<(String, String)> =
        sqlx::query_as("SELECT tbl::text, col FROM public.distributed ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        distributed,
        [
            ("observability.chat_messages".into(), "trace_id".into()),
            ("observability.document_events".into(), "trace_id".into()),
            ("observability.scores".into(), "trace_id".into()),
            ("observability.spans".into(), "trace_id".into()),
            ("observability.traces".into(), "id".into()),
        ]
    );
    // The note's table of keys is the schema's.
    for (table, key) in [
        ("traces", "(id, started_at)"),
        ("spans", "(trace_id, id, started_at)"),
        ("chat_messages", "(trace_id, id, created_at)"),
        ("document_events", "(trace_id, id, started_at)"),
        ("scores", "(trace_id, id, created_at)"),
    ] {
        let def: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c \
             WHERE c.conrelid = ('observability.' || $1)::regclass AND c.contype = 'p'",
        )
        .bind(table)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(def, format!("PRIMARY KEY {key}"), "{table}");
        assert!(
            doc.contains(&format!("| `{table}` |")) && doc.contains(&format!("`{key}`")),
            "the note shows the key of {table}"
        );
    }
}

#[tokio::test]
async fn the_stand_in_refuses_a_unique_index_without_the_distribution_column() {
    let db = fresh_db().await;
    db.pool.execute(STAND_IN).await.unwrap();
    db.pool
        .execute("CREATE UNIQUE INDEX spans_name_uq ON observability.spans (name, id, started_at)")
        .await
        .unwrap();
    let err = db
        .pool
        .execute("SELECT create_distributed_table('observability.spans', 'trace_id')")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not include the distribution column"),
        "{err}"
    );
}
