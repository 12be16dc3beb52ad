//! The writer's TCP connections have Nagle's algorithm off (`TCP_NODELAY`), which sqlx 0.9.0
//! no longer sets: without it every `COPY` of a batch waits about 40 ms for a delayed ACK.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{eventually, fresh_db};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tracing_postgres::{
    Builder, LlmCall, ObservabilityProvider, OperationType, PartitionPolicy, TraceContext,
};

/// Local and peer ports of `fd` when it is a connected TCP socket.
fn ports(fd: i32) -> Option<(u16, u16)> {
    let get = |f: unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32| {
        // SAFETY: zeroed `sockaddr_storage` is valid; `addr` and `len` outlive the call and
        // `len` holds the size of `addr`.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if unsafe { f(fd, (&raw mut addr).cast(), &raw mut len) } != 0 {
            return None;
        }
        // SAFETY: the kernel wrote an address of the family it reports; both fit in storage.
        match i32::from(addr.ss_family) {
            libc::AF_INET => Some(u16::from_be(unsafe {
                (*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port
            })),
            libc::AF_INET6 => Some(u16::from_be(unsafe {
                (*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port
            })),
            _ => None,
        }
    };
    Some((get(libc::getsockname)?, get(libc::getpeername)?))
}

/// Whether this process's socket with local port `local` to peer port `peer` has
/// `TCP_NODELAY`; `None` when there is no such socket.
fn nodelay_of(local: u16, peer: u16) -> Option<bool> {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if ports(fd) == Some((local, peer)) {
            let mut on: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `on` and `len` are ours, `len` holds the size of `on`.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&raw mut on).cast(),
                    &raw mut len,
                )
            };
            assert_eq!(rc, 0);
            return Some(on != 0);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_connections_have_nagle_off() {
    let db = fresh_db().await;
    let server_port: u16 = db
        .url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .get_port();
    let mut control = PgConnection::connect(&db.url).await.unwrap();
    let control_port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut control)
        .await
        .unwrap();
    let Some(control_port) = control_port else {
        eprintln!("the test server is reached over a Unix socket: no TCP to check");
        return;
    };
    // What sqlx itself does, for the record (off in sqlx 0.9.0).
    eprintln!(
        "a plain sqlx connection: TCP_NODELAY {:?}",
        nodelay_of(control_port as u16, server_port)
    );

    let (p, guard) = Builder::new(&db.url)
        .connections(2)
        // No upkeep connection: only the writer's connections carry the application name.
        .partitions(PartitionPolicy {
            maintain: false,
            ..Default::default()
        })
        .build()
        .unwrap();
    // Enough batches for both connections to be opened.
    for _ in 0..4 {
        let ctx = TraceContext::new();
        p.start_trace(&ctx, "nodelay", OperationType::Chat, None);
        p.log_llm_call(&ctx, LlmCall::default());
        p.end_trace(&ctx, Default::default(), Default::default());
        assert!(guard.flush(Duration::from_secs(10)));
    }
    let name = db.name.clone();
    let pool = db.pool.clone();
    let ports = move || {
        let (name, pool) = (name.clone(), pool.clone());
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT client_port FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'tracing-postgres'",
            )
            .bind(name)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let ports = ports.clone();
            async move { !ports().await.is_empty() }
        })
        .await,
        "the writer has connected"
    );
    let writer_ports = ports().await;
    for port in &writer_ports {
        assert_eq!(
            nodelay_of(*port as u16, server_port),
            Some(true),
            "writer connection from port {port} has TCP_NODELAY"
        );
    }
    drop(p);
    guard.shutdown(Duration::from_secs(5));
}
