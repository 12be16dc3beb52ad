//! Why nothing is written, told by `stats()`: for each way a database can be wrong (server
//! stopped, a role that does not exist, a wrong password, a missing database, an unmigrated
//! database, a revoked INSERT, a read-only database), against a real server, the state and the
//! kind of failure within 2 s of the writer's first attempt, a warning that names the fix, and,
//! once the cause is removed, the records queued meanwhile written and the state back to
//! writing. Also the `on_state_change` callback. A test binary of its own: it installs a
//! global subscriber to read the warnings.

use tracing_postgres_test_support as common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{Capture, Cluster, count, empty_db, fresh_db, fresh_db_on, with_database};
use sqlx::{AssertSqlSafe, PgPool};
use tracing_postgres::*;

/// Everything the writer threads log, for every test of this binary.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Capture(Arc::clone(&log));
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .init();
        log
    })
}

const FLUSH: Duration = Duration::from_secs(30);

/// Builds a provider for `url`, with the log installed first.
fn build(url: &str) -> (PostgresProvider, WriterGuard) {
    log();
    Builder::new(url)
        .flush_interval(Duration::from_millis(50))
        .connections(2)
        .build()
        .unwrap()
}

fn llm(tokens: i64) -> LlmCall {
    LlmCall {
        name: Some("call".into()),
        latency_ms: Some(1.0),
        metrics: LlmMetrics {
            model: Some("m".into()),
            prompt_tokens: Some(tokens),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits (at most 2 s from `since`, the writer's start) for the state to be retrying with a
/// failure of `kind`, and checks the warning logged for it names the fix.
fn failing_with(guard: &WriterGuard, kind: ErrorKind, since: Instant) -> WriterError {
    let deadline = since + Duration::from_secs(2);
    let stats = loop {
        let s = guard.stats();
        let found = s.last_error.as_ref().map(|e| e.kind) == Some(kind)
            && matches!(s.state, WriterState::Retrying { .. });
        if found || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        matches!(stats.state, WriterState::Retrying { attempts, .. } if attempts >= 1),
        "not retrying with {kind} within 2 s: {stats:?}"
    );
    assert!(!stats.connected);
    let err = stats.last_error.expect("a last error");
    assert_eq!(err.kind, kind, "{err:?}");
    assert!(!err.fix.is_empty());
    // The warning is logged by the writer thread as the state changes: give it a moment.
    let wanted = format!(
        "cannot write to the database ({kind}); records are kept and retried. Fix: {}",
        err.fix
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
        if text.contains(&wanted) {
            break;
        }
        assert!(Instant::now() < deadline, "no warning {wanted:?} in {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    err
}

/// After the cause is removed: everything queued is written and the state is writing again,
/// with no error and the recovery's time kept.
async fn recovers(p: &PostgresProvider, guard: &WriterGuard, pool: &PgPool, queued: i64) {
    // One more record after the fix, so a batch certainly goes.
    p.log_llm_call(&TraceContext::new(), llm(-1));
    assert!(guard.flush(FLUSH), "{:?}", guard.stats());
    let s = guard.stats();
    assert_eq!(s.written, queued as u64 + 1, "{s:?}");
    assert_eq!(s.state, WriterState::Writing, "{s:?}");
    assert!(s.connected);
    assert_eq!(s.last_error, None, "{s:?}");
    assert!(s.recovered_at.is_some(), "{s:?}");
    assert_eq!(count(pool, "spans").await, queued + 1);
}

fn queue(p: &PostgresProvider, n: i64) -> i64 {
    let ctx = TraceContext::new();
    for i in 0..n {
        p.log_llm_call(&ctx, llm(i));
    }
    n
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A role of the shared test server, unique to the test.
fn role_name(what: &str) -> String {
    format!(
        "tpg_{what}_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// Gives `role` what the writer needs (the README's grants).
async fn grant_writer(pool: &PgPool, role: &str, db: &str) {
    for sql in [
        format!("GRANT USAGE ON SCHEMA observability TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA observability TO {role}"),
        format!("GRANT TEMPORARY ON DATABASE {db} TO {role}"),
        format!(
            "GRANT EXECUTE ON FUNCTION observability.create_partitions(timestamptz, \
             timestamptz, text) TO {role}"
        ),
    ] {
        exec(pool, &sql).await;
    }
}

/// Drops a role the test made (its grants in the test's database first).
async fn drop_role(pool: &PgPool, role: &str) {
    exec(pool, &format!("DROP OWNED BY {role}")).await;
    exec(pool, &format!("DROP ROLE {role}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unreachable_until_it_starts() {
    let cluster = Cluster::start();
    let db = fresh_db_on(&cluster.url()).await;
    db.pool.close().await;
    cluster.stop_server();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&changes);
    log();
    let started = Instant::now();
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(50))
        .on_state_change(move |s: &Stats| {
            let kind = s.last_error.as_ref().map(|e| e.kind);
            seen.lock().unwrap().push((s.state.name(), kind));
        })
        .build()
        .unwrap();
    let err = failing_with(&guard, ErrorKind::Unreachable, started);
    assert!(err.fix.contains("host and port"), "{err:?}");
    let queued = queue(&p, 100);
    cluster.start_server();
    let pool = PgPool::connect(&db.url).await.unwrap();
    recovers(&p, &guard, &pool, queued).await;
    guard.shutdown(FLUSH);
    // The last call comes from the callback's thread, maybe after the shutdown returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    while changes.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let changes = changes.lock().unwrap().clone();
    assert_eq!(
        changes,
        [
            ("retrying", Some(ErrorKind::Unreachable)),
            ("writing", None),
            ("stopped", None)
        ],
        "{changes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_does_not_exist_fails_authentication_until_it_is_created() {
    let db = fresh_db().await;
    let role = role_name("ghost");
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url);
    let started = Instant::now();
    let (p, guard) = build(&url);
    let err = failing_with(&guard, ErrorKind::AuthenticationFailed, started);
    assert!(err.message.contains(&role), "{err:?}");
    assert!(err.fix.contains(&format!("role \"{role}\"")), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("28000"));
    let queued = queue(&p, 50);
    exec(&db.pool, &format!("CREATE ROLE {role} LOGIN")).await;
    grant_writer(&db.pool, &role, &db.name).await;
    recovers(&p, &guard, &db.pool, queued).await;
    guard.shutdown(FLUSH);
    drop_role(&db.pool, &role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_authentication_and_is_never_shown() {
    let cluster = Cluster::start_with_password("right-password");
    let db = fresh_db_on(&cluster.url()).await;
    let url = db.url.replacen("right-password", "the-wrong-secret", 1);
    let started = Instant::now();
    let (p, guard) = build(&url);
    let err = failing_with(&guard, ErrorKind::AuthenticationFailed, started);
    assert_eq!(err.code.as_deref(), Some("28P01"), "{err:?}");
    assert!(
        err.message.contains("password authentication failed"),
        "{err:?}"
    );
    let queued = queue(&p, 50);
    // The password the writer has becomes the right one.
    exec(&db.pool, "ALTER ROLE postgres PASSWORD 'the-wrong-secret'").await;
    recovers(&p, &guard, &db.pool, queued).await;
    let shown = format!("{:?} {guard:?} {p:?}", guard.stats());
    let report = guard.shutdown(FLUSH);
    assert!(report.complete);
    let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    assert!(!text.contains("the-wrong-secret"), "{text}");
    assert!(!shown.contains("the-wrong-secret"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_said_until_it_is_created_and_migrated() {
    let admin = common::admin_url();
    let name = format!("tpg_missing_{}", uuid::Uuid::now_v7().simple());
    let url = with_database(&admin, &name);
    let started = Instant::now();
    let (p, guard) = build(&url);
    let err = failing_with(&guard, ErrorKind::DatabaseMissing, started);
    assert!(err.message.contains(&name), "{err:?}");
    assert!(err.fix.contains("createdb"), "{err:?}");
    let queued = queue(&p, 50);
    let admin_pool = PgPool::connect(&admin).await.unwrap();
    exec(&admin_pool, &format!("CREATE DATABASE {name}")).await;
    let pool = PgPool::connect(&url).await.unwrap();
    // Until migrated, the database is there and the schema is not.
    let err = failing_with(&guard, ErrorKind::NotMigrated, Instant::now());
    assert!(err.fix.contains("tracing-postgres migrate"), "{err:?}");
    migrate(&pool).await.unwrap();
    recovers(&p, &guard, &pool, queued).await;
    guard.shutdown(FLUSH);
    pool.close().await;
    exec(&admin_pool, &format!("DROP DATABASE {name}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_database_is_said_before_any_record_and_written_once_migrated() {
    let db = empty_db().await;
    let started = Instant::now();
    let (p, guard) = build(&db.url);
    // Nothing queued yet: the writer's check at start finds it.
    let err = failing_with(&guard, ErrorKind::NotMigrated, started);
    assert!(err.message.contains("\"observability\""), "{err:?}");
    assert!(err.fix.contains("tracing-postgres migrate"), "{err:?}");
    assert_eq!(guard.stats().retries, 0);
    let queued = queue(&p, 100);
    migrate(&db.pool).await.unwrap();
    recovers(&p, &guard, &db.pool, queued).await;
    guard.shutdown(FLUSH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_insert_is_named_with_the_grant_that_fixes_it() {
    let db = fresh_db().await;
    let role = role_name("writer");
    exec(&db.pool, &format!("CREATE ROLE {role} LOGIN")).await;
    grant_writer(&db.pool, &role, &db.name).await;
    exec(
        &db.pool,
        &format!("REVOKE INSERT ON observability.spans FROM {role}"),
    )
    .await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let started = Instant::now();
    let (p, guard) = build(&url);
    let err = failing_with(&guard, ErrorKind::PermissionDenied, started);
    assert!(
        err.message.contains("INSERT on observability.spans"),
        "{err:?}"
    );
    assert!(err.fix.contains(&format!("TO {role}")), "{err:?}");
    let queued = queue(&p, 100);
    // The batches meet the same refusal, and stay queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard.stats().retries == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = guard.stats();
    assert!(s.retries > 0, "{s:?}");
    assert_eq!(
        s.last_error.as_ref().map(|e| e.kind),
        Some(ErrorKind::PermissionDenied)
    );
    assert_eq!(
        s.last_error.as_ref().and_then(|e| e.code.as_deref()),
        Some("42501")
    );
    assert_eq!((s.written, s.refused), (0, 0), "{s:?}");
    exec(
        &db.pool,
        &format!("GRANT INSERT ON observability.spans TO {role}"),
    )
    .await;
    recovers(&p, &guard, &db.pool, queued).await;
    guard.shutdown(FLUSH);
    drop_role(&db.pool, &role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_said_and_written_once_writable() {
    let db = fresh_db().await;
    exec(
        &db.pool,
        &format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            db.name
        ),
    )
    .await;
    let (p, guard) = build(&db.url);
    let started = Instant::now();
    let queued = queue(&p, 100);
    let err = failing_with(&guard, ErrorKind::ReadOnly, started);
    assert_eq!(err.code.as_deref(), Some("25006"), "{err:?}");
    exec(
        &db.pool,
        &format!(
            "ALTER DATABASE {} RESET default_transaction_read_only",
            db.name
        ),
    )
    .await;
    // The test's own pool keeps its sessions; count on a fresh one.
    let pool = PgPool::connect(&db.url).await.unwrap();
    recovers(&p, &guard, &pool, queued).await;
    guard.shutdown(FLUSH);
}

/// The callback runs on a thread of its own: while it blocks, the writer writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_state_callback_holds_no_write_back() {
    let db = fresh_db().await;
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    log();
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(50))
        .on_state_change(move |s: &Stats| {
            seen.lock().unwrap().push(s.state);
            // Blocks until the test lets it go (at most 60 s).
            let _ = released.recv_timeout(Duration::from_secs(60));
            // A panic in the callback is caught, and the next change still delivered.
            if s.state == WriterState::Writing {
                panic!("a callback's own bug");
            }
        })
        .build()
        .unwrap();
    let queued = queue(&p, 200);
    assert!(guard.flush(FLUSH));
    assert_eq!(count(&db.pool, "spans").await, queued);
    // The callback was called for the first change and is still blocked in it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(calls.lock().unwrap().clone(), [WriterState::Writing]);
    release.send(()).unwrap();
    let report = guard.shutdown(FLUSH);
    assert!(report.complete);
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.lock().unwrap().len() < 2 && Instant::now() < deadline {
        let _ = release.try_send(());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        calls.lock().unwrap().clone(),
        [WriterState::Writing, WriterState::Stopped]
    );
    assert_eq!(report.stats.state, WriterState::Stopped);
    let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    assert!(
        text.contains("the on_state_change callback panicked"),
        "{text}"
    );
}
