//! `tracing-postgres serve`: a read-only web viewer of the store.
//!
//! Pages are HTML rendered here from the library's query API (maud escapes every value for
//! its context); the one stylesheet and the one script are compiled into the binary and
//! served from `/static/`. Every response carries a Content-Security-Policy that allows no
//! inline script or style, so stored text can never run.
//!
//! | path                      | page |
//! |---------------------------|------|
//! | `/`                       | traces, filtered (query string) and keyset-paged, live |
//! | `/fragments/traces`       | the rows of the first page of `/` (polled by the script) |
//! | `/traces/{id}`            | one trace: waterfall, span detail, chat, document steps |
//! | `/traces/{id}/spans/{s}`  | one span's detail (fetched by the script on selection) |
//! | `/traces/{id}/full`       | one whole stored value, as plain text |
//! | `/sessions`, `/sessions/{id}` | sessions; one as a transcript |
//! | `/documents`, `/documents/{id}` | failed ingestion steps; one document's steps |
//! | `/usage`                  | usage charts and table |

mod auth;
mod chat;
mod documents;
mod error;
mod format;
mod page;
mod sessions;
mod trace;
mod traces;
mod usage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The environment variable that may hold the access token.
pub const TOKEN_ENV: &str = "TRACING_POSTGRES_TOKEN";

/// How `serve` runs.
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The access token; required unless `listen` is a loopback address.
    pub token: Option<String>,
    /// The longest any query may run.
    pub statement_timeout: Duration,
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    pool: PgPool,
    token: Option<Arc<str>>,
}

/// Every page is sent with these: no inline script or style, nothing from elsewhere, no
/// framing, no referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// Checks the options, then serves until the process is stopped. Refuses to start when
/// listening beyond loopback without a token.
pub async fn run(url: &str, options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let token = options.token.filter(|t| !t.is_empty());
    if !options.listen.ip().is_loopback() && token.is_none() {
        return Err(format!(
            "refusing to listen on {} without an access token: pass --token or set {TOKEN_ENV} \
             (only loopback addresses may be served without one)",
            options.listen
        )
        .into());
    }
    let connect: PgConnectOptions = url.parse()?;
    let timeout_ms = options.statement_timeout.as_millis().to_string();
    // Set at connection start-up: every query of every connection is bounded.
    let connect = connect
        .options([("statement_timeout", timeout_ms.as_str())])
        .application_name("tracing-postgres serve");
    // Lazy: the server starts (and answers with an error page) while the database is down,
    // and connects once it is back.
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(connect);
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let state = AppState {
        pool,
        token: token.map(Arc::from),
    };
    println!("serving http://{addr}/");
    axum::serve(listener, app(state)).await?;
    Ok(())
}

/// The routes, behind the token check, with the security headers on every response.
fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(traces::list))
        .route("/fragments/traces", get(traces::fragment))
        .route("/traces/{id}", get(trace::page))
        .route("/traces/{id}/spans/{span}", get(trace::span_fragment))
        .route("/traces/{id}/full", get(trace::full_value))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::page))
        .route("/documents", get(documents::failed))
        .route("/documents/{id}", get(documents::page))
        .route("/usage", get(usage::page))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(middleware::from_fn(security_headers))
        // Belt and braces: no handler is meant to panic, but one that did gets a 500 page
        // instead of a dropped connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                error::WebError::Internal("the viewer hit a bug rendering this page".into())
                    .into_response()
            },
        ))
        .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        APP_CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn not_found() -> error::WebError {
    error::WebError::NotFound("no such page".into())
}
