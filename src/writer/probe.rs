//! The writer's check of the database before (and, while it cannot write, between) batches:
//! the schema is there, migrated to this version, and the writer's role may write its four
//! tables. So the state says why nothing is written before the first batch meets the problem,
//! and says when it is fixed even while nothing is queued.

use sqlx::PgConnection;

use crate::migrations::latest_migration;
use crate::model::health::{ErrorKind, WriterError};
use crate::schema::{TABLE_PRIVILEGES, TABLES};

/// What the catalog says of the schema, for the writer's role.
#[derive(Debug, sqlx::FromRow)]
struct Catalog {
    has_schema: bool,
    has_history: bool,
    schema_usage: Option<bool>,
    can_read_history: Option<bool>,
    missing_tables: Vec<String>,
    missing_grants: Vec<String>,
}

/// Checks the database on `conn`: `Ok(None)` when the writer can write, `Ok(Some(problem))`
/// when the schema or the grants stand in the way, `Err` when the check itself failed (the
/// server away, the login refused...).
pub(crate) async fn check(
    conn: &mut PgConnection,
    role: &str,
) -> Result<Option<WriterError>, sqlx::Error> {
    let c: Catalog = sqlx::query_as(
        "WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = 'observability'), \
              t AS (SELECT name, to_regclass('observability.' || name) AS rel \
                    FROM unnest($1::text[]) AS name) \
         SELECT EXISTS (SELECT 1 FROM s) AS has_schema, \
                to_regclass('observability._sqlx_migrations') IS NOT NULL AS has_history, \
                (SELECT has_schema_privilege(oid, 'USAGE') FROM s) AS schema_usage, \
                (SELECT has_table_privilege(r, 'SELECT') \
                   FROM to_regclass('observability._sqlx_migrations') AS r \
                  WHERE r IS NOT NULL) AS can_read_history, \
                ARRAY(SELECT name FROM t WHERE rel IS NULL) AS missing_tables, \
                ARRAY(SELECT p || ' on observability.' || name \
                        FROM t, unnest($2::text[]) AS p \
                       WHERE rel IS NOT NULL AND NOT has_table_privilege(rel, p)) \
                  AS missing_grants",
    )
    .bind(&TABLES[..])
    .bind(&TABLE_PRIVILEGES[..])
    .fetch_one(&mut *conn)
    .await?;
    let not_migrated = |message: String| {
        Ok(Some(WriterError::of_kind(
            ErrorKind::NotMigrated,
            None,
            message,
            role,
        )))
    };
    if !c.has_schema {
        return not_migrated("the schema \"observability\" does not exist".into());
    }
    if !c.has_history || !c.missing_tables.is_empty() {
        return not_migrated(format!(
            "the schema \"observability\" is not migrated (missing: {})",
            if c.has_history {
                c.missing_tables.join(", ")
            } else {
                "_sqlx_migrations".into()
            }
        ));
    }
    if c.schema_usage == Some(false) {
        return Ok(Some(WriterError::of_kind(
            ErrorKind::PermissionDenied,
            None,
            format!("role \"{role}\" has no USAGE on schema observability"),
            role,
        )));
    }
    if !c.missing_grants.is_empty() {
        return Ok(Some(WriterError::of_kind(
            ErrorKind::PermissionDenied,
            None,
            format!("role \"{role}\" lacks {}", c.missing_grants.join(", ")),
            role,
        )));
    }
    // A role that may not read the history is not asked for it: its writes tell.
    if c.can_read_history == Some(true) {
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT max(version) FROM observability._sqlx_migrations WHERE success",
        )
        .fetch_one(&mut *conn)
        .await?;
        let applied = applied.unwrap_or(0);
        let needed = latest_migration();
        if applied < needed {
            return not_migrated(format!(
                "the schema is at migration {applied}; this version of tracing-postgres needs \
                 {needed}"
            ));
        }
    }
    Ok(None)
}
