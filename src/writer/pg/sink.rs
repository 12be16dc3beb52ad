//! The SQL side of the writer: one transaction per batch, `COPY` for fresh rows, a staging
//! table and an upsert for rows that may meet a stored row, and the classification of errors
//! into "try again later" and "this data is refused".

use std::borrow::Cow;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError};
use sqlx::{AssertSqlSafe, Connection};

use super::copy::{CopyEncoder, HEADER};
use super::tables::{Table, copy_sql, create_stage_sql, stage_name, upsert_sql};
use super::{parts, rollups};
use crate::schema::SHORT_SPAN_COLUMNS;
use crate::writer::batch::{Batch, Entry};

/// How a batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// First attempt: fresh rows by plain `COPY`, the others through the upsert.
    Fast,
    /// A retry, or a search for a refused row: every row through the upsert, so rows a failed
    /// attempt may have committed are not written twice.
    Idempotent,
}

/// What kind of failure a write met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The database is away, busy, locked, restarting or not yet migrated: keep the rows and
    /// try again.
    Transient,
    /// The database refuses the data itself: find the refused rows and keep the others.
    Refused,
}

/// Sorts an error into [`Failure::Transient`] or [`Failure::Refused`].
pub(crate) fn classify(err: &sqlx::Error) -> Failure {
    match err {
        // A row routed to a partition just before another partition took its range over (the
        // upkeep attaching a partition for rows waiting in DEFAULT): written again, it is
        // routed afresh. Not the data's fault, so not refused.
        sqlx::Error::Database(db)
            if db
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(PgDatabaseError::routine)
                == Some("ExecPartitionCheckEmitError") =>
        {
            Failure::Transient
        }
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            match code.get(..2).unwrap_or("") {
                // Data exceptions, integrity violations, cardinality violations, program
                // limits (an index row too large), features a value needs, and exceptions
                // raised by the application's own triggers: this data is refused.
                "22" | "23" | "21" | "54" | "0A" | "P0" => Failure::Refused,
                // Everything else, class 42 included (missing privilege, schema, table or
                // column: a database one migration behind), is fixable by an operator without
                // losing the buffered rows, so wait and retry.
                _ => Failure::Transient,
            }
        }
        sqlx::Error::Encode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => Failure::Refused,
        _ => Failure::Transient,
    }
}

/// Longest wait for a new connection before the attempt counts as failed and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest write of one batch: past it (a half-open connection, a lock held for minutes) the
/// connection is dropped and the batch retried on a new one.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// One of the writer's connections, opened on first use and again after a transient failure.
#[derive(Debug)]
pub(crate) struct Link {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
}

impl Link {
    pub fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            conn: None,
        }
    }

    /// Writes the whole batch in one transaction. After a transient failure the connection is
    /// closed, so the next attempt starts on a fresh one.
    pub async fn write(&mut self, batch: &Batch, mode: Mode) -> Result<(), sqlx::Error> {
        let result = self.try_write(batch, mode).await;
        if result
            .as_ref()
            .is_err_and(|e| classify(e) == Failure::Transient)
        {
            self.conn = None;
        }
        result
    }

    /// Checks that the schema is there and writable (see [`probe`](super::probe)). After a
    /// failure the connection is closed, as after a failed write.
    pub async fn check(
        &mut self,
        role: &str,
    ) -> Result<Option<crate::model::health::WriterError>, sqlx::Error> {
        let result = async {
            let conn = self.connection().await?;
            tokio::time::timeout(ATTEMPT_TIMEOUT, crate::writer::probe::check(conn, role))
                .await
                .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn try_write(&mut self, batch: &Batch, mode: Mode) -> Result<(), sqlx::Error> {
        let conn = self.connection().await?;
        tokio::time::timeout(ATTEMPT_TIMEOUT, write_batch(conn, batch, mode))
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
    }

    /// The open connection, or a new one.
    async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        Ok(match &mut self.conn {
            Some(c) => c,
            slot => {
                let c = tokio::time::timeout(CONNECT_TIMEOUT, async {
                    #[allow(unused_mut)] // mutated only with the `tcp-nodelay` workaround
                    let mut c = PgConnection::connect_with(&self.options).await?;
                    #[cfg(feature = "tcp-nodelay")]
                    crate::writer::nodelay::set_nodelay(&mut c, self.options.get_port()).await;
                    Ok::<_, sqlx::Error>(c)
                })
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
                slot.insert(c)
            }
        })
    }
}

/// Writes the whole batch in one transaction. The transaction is PostgreSQL's own rather than
/// a `sqlx::Transaction`, so that its last statement and `COMMIT` go out in one message (see
/// [`rollups::commit_with_marks`]); after an error it is rolled back here, and a connection
/// whose state is unknown (an I/O error, a timeout) is closed by [`Link::write`].
async fn write_batch(
    conn: &mut PgConnection,
    batch: &Batch,
    mode: Mode,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    let result = write_rows(conn, batch, mode).await;
    if result.is_err() {
        // Best effort: after an I/O error the connection is closed anyway, which rolls back.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

/// The batch's statements, inside the transaction `write_batch` opened, ending with its
/// commit.
async fn write_rows(tx: &mut PgConnection, batch: &Batch, mode: Mode) -> Result<(), sqlx::Error> {
    // Traces that crossed processes: their locks first (see `parts::lock`).
    let recounted = batch.recounted_traces();
    if !recounted.is_empty() {
        parts::lock(tx, &recounted).await?;
    }
    let spans = &batch.encoded_spans;
    let short = Narrow {
        columns: SHORT_SPAN_COLUMNS,
        bytes: spans.short.bytes(),
    };
    write_table(tx, &batch.spans, spans.full.bytes(), Some(short), mode).await?;
    write_table(tx, &batch.chats, &[], None, mode).await?;
    write_table(tx, &batch.docs, &[], None, mode).await?;
    write_table(tx, &batch.scores, &[], None, mode).await?;
    // Traces last: the end of a trace whose start went out in the batch before meets that
    // start's row, and waits for its transaction (on another connection) to commit. Waiting
    // at the end of the transaction, after the bulk of its rows, keeps the connections
    // writing side by side; waiting first made each batch wait for the one before it.
    write_table(tx, &batch.traces, &[], None, mode).await?;
    if !batch.parts.is_empty() {
        parts::insert(tx, &batch.parts).await?;
    }
    if !recounted.is_empty() {
        parts::recount(tx, &recounted).await?;
    }
    rollups::commit_with_marks(tx, &batch.usage_hours(), &recounted).await
}

/// Fresh rows already encoded with only some of a table's columns (the others NULL).
#[derive(Debug, Clone, Copy)]
struct Narrow<'a> {
    columns: &'static [&'static str],
    bytes: &'a [u8],
}

/// Writes a table's rows: `entries`, `encoded` rows (fresh, already encoded with every
/// column) and `narrow` ones (fresh, fewer columns).
async fn write_table<T: Table>(
    conn: &mut PgConnection,
    entries: &[Entry<T>],
    encoded: &[u8],
    narrow: Option<Narrow<'_>>,
    mode: Mode,
) -> Result<(), sqlx::Error> {
    let narrow = narrow.filter(|n| !n.bytes.is_empty());
    if entries.is_empty() && encoded.is_empty() && narrow.is_none() {
        return Ok(());
    }
    let fast = mode == Mode::Fast;
    let direct = entries.iter().filter(|e| fast && e.fresh);
    let staged = entries.iter().filter(|e| !(fast && e.fresh));
    // Encoded rows are fresh: copied straight in on a first attempt, staged on a retry.
    let (direct_encoded, staged_encoded) = if fast {
        (encoded, &[][..])
    } else {
        (&[][..], encoded)
    };
    let (direct_narrow, staged_narrow) = if fast { (narrow, None) } else { (None, narrow) };
    let table = format!("observability.{}", T::NAME);
    if let Some(bytes) = encode(direct, direct_encoded) {
        copy(conn, &copy_sql(&table, T::COLUMNS), bytes).await?;
    }
    if let Some(n) = direct_narrow {
        copy(conn, &copy_sql(&table, n.columns), stream(n.bytes)).await?;
    }
    let staged = encode(staged, staged_encoded);
    if staged.is_some() || staged_narrow.is_some() {
        let stage = stage_name::<T>();
        sqlx::query(AssertSqlSafe(create_stage_sql::<T>()))
            .execute(&mut *conn)
            .await?;
        if let Some(bytes) = staged {
            copy(conn, &copy_sql(&stage, T::COLUMNS), bytes).await?;
        }
        // The staging table has no defaults: the columns left out are NULL there too.
        if let Some(n) = staged_narrow {
            copy(conn, &copy_sql(&stage, n.columns), stream(n.bytes)).await?;
        }
        sqlx::query(AssertSqlSafe(upsert_sql::<T>()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A binary `COPY` stream of rows already encoded.
fn stream(encoded: &[u8]) -> [Cow<'_, [u8]>; 3] {
    [
        Cow::Borrowed(&HEADER[..]),
        Cow::Borrowed(encoded),
        Cow::Borrowed(&TRAILER[..]),
    ]
}

/// A binary `COPY` stream in parts: the header and `rows` encoded here, then rows already
/// encoded, then the trailer; or `None` when there is no row.
fn encode<'a, T: Table + 'a>(
    rows: impl Iterator<Item = &'a Entry<T>>,
    encoded: &'a [u8],
) -> Option<[Cow<'a, [u8]>; 3]> {
    let mut enc = CopyEncoder::new();
    let mut any = !encoded.is_empty();
    for e in rows {
        enc.row(&*e.row);
        any = true;
    }
    let head = enc.into_bytes();
    any.then(|| {
        [
            Cow::Owned(head),
            Cow::Borrowed(encoded),
            Cow::Borrowed(&TRAILER[..]),
        ]
    })
}

async fn copy(
    conn: &mut PgConnection,
    sql: &str,
    parts: [Cow<'_, [u8]>; 3],
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    // Send in pieces so the server starts on the first rows while later ones are in flight.
    for chunk in parts.iter().flat_map(|p| p.chunks(CHUNK)) {
        if let Err(e) = copy.send(chunk).await {
            // Leave the connection usable: abort the COPY; its own error adds nothing.
            let _ = copy.abort("tracing-postgres: send failed").await;
            return Err(e);
        }
    }
    copy.finish().await.map(|_| ())
}

/// The end of a binary `COPY` stream: a field count of -1.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Bytes per `CopyData` message.
const CHUNK: usize = 256 * 1024;
