//! The writer's TCP connections have Nagle's algorithm off (`TCP_NODELAY`), which sqlx 0.9.0
//! no longer sets: without it every `COPY` of a batch waits about 40 ms for a delayed ACK.
#![cfg(all(target_os = "linux", feature = "tcp-nodelay"))]

use tracing_postgres_test_support as common;

use std::time::Duration;

use common::{eventually, fresh_db};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tracing_postgres::{
    Builder, LlmCall, ObservabilityProvider, OperationType, PartitionPolicy, TraceContext,
    tcp_nodelay_of,
};

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
        tcp_nodelay_of(control_port as u16, server_port)
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
            tcp_nodelay_of(*port as u16, server_port),
            Some(true),
            "writer connection from port {port} has TCP_NODELAY"
        );
    }
    drop(p);
    guard.shutdown(Duration::from_secs(5));
}
