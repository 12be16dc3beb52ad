//! What a request can fail with, each as a page with its HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::page;

/// A failed request.
#[derive(Debug)]
pub enum WebError {
    /// The database is down, slow (statement timeout) or refused the query: 503.
    Db(sqlx::Error),
    /// Nothing stored under that id: 404.
    NotFound(String),
    /// A parameter that does not parse: 400.
    BadRequest(String),
    /// No or a wrong access token: 401.
    Unauthorized,
    /// A bug of the viewer: 500.
    Internal(String),
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::Db(e)
    }
}

/// What went wrong with the database, in words.
fn describe_db(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => {
            "the database did not answer in time (no connection could be made)".to_owned()
        }
        sqlx::Error::Io(e) => format!("the database cannot be reached: {e}"),
        sqlx::Error::Database(d) if d.code().as_deref() == Some("57014") => {
            "the query took longer than the statement timeout and was cancelled".to_owned()
        }
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42501") => format!(
            "the database refused the query (grant SELECT on the observability schema): {}",
            d.message()
        ),
        e => format!("the database failed: {e}"),
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match &self {
            WebError::Db(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Database unavailable",
                format!("{}. Try again in a moment.", describe_db(e)),
            ),
            WebError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what.clone()),
            WebError::BadRequest(what) => (StatusCode::BAD_REQUEST, "Bad request", what.clone()),
            WebError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Access token required",
                "This viewer needs its access token: send it as \
                 `Authorization: Bearer <token>`, or open a link ending in ?token=<token>."
                    .to_owned(),
            ),
            WebError::Internal(what) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                what.clone(),
            ),
        };
        let body = page::layout(
            title,
            "",
            html! {
                div.error-page {
                    h1 { (title) }
                    p #error-detail { (detail) }
                    p { "HTTP " (status.as_u16()) }
                }
            },
        );
        (status, body).into_response()
    }
}
