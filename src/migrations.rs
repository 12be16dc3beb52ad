//! The schema's migrations, embedded in the crate.

use std::sync::LazyLock;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

use crate::partitions::{self, PartitionPolicy};
use crate::schema;

/// The migrations as sqlx embeds them from `migrations/`.
static EMBEDDED: Migrator = sqlx::migrate!("./migrations");

/// Where the migrator records which migrations ran. It lives in the `observability` schema so
/// it never mixes with the application's own `_sqlx_migrations` history.
pub const HISTORY_TABLE: &str = "observability._sqlx_migrations";

/// The crate's migrator: the `observability` schema's migrations, embedded at compile time,
/// with their history kept in [`HISTORY_TABLE`].
///
/// Run it from your own migration flow (`MIGRATOR.run(&pool).await`), or call [`migrate`].
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut m = Migrator::with_migrations(EMBEDDED.iter().cloned().collect());
    m.create_schema(schema::SCHEMA);
    m.dangerous_set_table_name(HISTORY_TABLE);
    m
});

/// Creates or updates the `observability` schema, then creates the time partitions of the
/// coming days ([`PartitionPolicy::default`]). Safe to run on every start: applied migrations
/// are skipped, concurrent runs wait on sqlx's advisory lock, and existing partitions are kept.
///
/// The writer never migrates: migrations need more privileges than writing rows, and a role
/// with only `INSERT`, `UPDATE` and `SELECT` on the schema's tables is enough to write. (It
/// does create partitions ahead, when allowed to: see [`crate::partitions`].)
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await?;
    partitions::create_ahead(pool, &PartitionPolicy::default())
        .await
        .map_err(MigrateError::Execute)?;
    Ok(())
}

/// The newest migration this version of the crate has.
pub(crate) fn latest_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}
