//! The access token: every request must carry it when one is set.
//!
//! It is accepted as `Authorization: Bearer <token>` (a reverse proxy, a script), as the
//! `tpg_token` cookie, or once as `?token=<token>` in a link, which sets the cookie and
//! redirects to the same address without it (so the token leaves the address bar).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::WebError;

const COOKIE: &str = "tpg_token";

/// Lets the request through when no token is set or it carries the token; else 401.
pub async fn require(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    if bearer
        .into_iter()
        .chain(cookie)
        .any(|given| same(given.as_bytes(), token.as_bytes()))
    {
        return next.run(req).await;
    }
    // A link with the token: set the cookie, drop the token from the address.
    let query = req.uri().query().unwrap_or("");
    let (given, rest): (Vec<_>, Vec<_>) =
        form_pairs(query).partition(|(k, _)| k.as_str() == "token");
    if given
        .iter()
        .any(|(_, v)| same(v.as_bytes(), token.as_bytes()))
    {
        let mut location = req.uri().path().to_owned();
        if !rest.is_empty() {
            location.push('?');
            location.push_str(&serde_urlencoded::to_string(&rest).unwrap_or_default());
        }
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        let mut res = (StatusCode::SEE_OTHER, "").into_response();
        if let (Ok(loc), Ok(cookie)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&cookie),
        ) {
            res.headers_mut().insert(header::LOCATION, loc);
            res.headers_mut().insert(header::SET_COOKIE, cookie);
            return res;
        }
    }
    WebError::Unauthorized.into_response()
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
}

/// Equal, in a time that depends on the lengths only, never on where the bytes differ.
pub fn same(given: &[u8], token: &[u8]) -> bool {
    let mut diff = given.len() ^ token.len();
    for (i, t) in token.iter().enumerate() {
        // Past the end of `given`, compare against 0 (the lengths already differ).
        let g = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(g ^ t);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cre", b"s3cret"));
        assert!(!same(b"s3cretx", b"s3cret"));
        assert!(!same(b"S3cret", b"s3cret"));
        assert!(!same(b"", b"s3cret"));
    }
}
