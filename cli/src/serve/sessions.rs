//! `/sessions`: the chat sessions of a time range; `/sessions/{id}`: one as a transcript,
//! each message linking to the trace that wrote it.

use axum::extract::{Path, Query, State};
use axum::response::Html;
use chrono::Utc;
use maud::html;
use rust_decimal::Decimal;
use serde::Deserialize;
use tracing_postgres::query::{self, TraceFilter};

use super::error::WebError;
use super::format::{self, cost, num};
use super::traces::since_param;
use super::{AppState, chat, page};

/// `?since=24h` (default), or any time `/` accepts.
#[derive(Debug, Deserialize)]
pub struct SessionsQuery {
    #[serde(default)]
    since: Option<String>,
}

/// The list.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<SessionsQuery>,
) -> Result<Html<String>, WebError> {
    let now = Utc::now();
    let (since, from) = since_param(q.since.as_deref(), "24h", now)?;
    let sessions = query::recent_sessions(&state.pool, from, now, 200).await?;
    let content = html! {
        h1 { "Sessions" }
        form.filters method="get" action="/sessions" {
            label { "Active since " input name="since" value=(since) placeholder="24h, 7d or a time"; }
            button type="submit" { "Show" }
        }
        table.list #sessions {
            thead { tr {
                th { "Session" } th { "User" } th.n { "Turns" } th { "Last activity (UTC)" }
                th.n { "Tokens" } th.n { "Cost" } th.n { "Errors" }
            } }
            tbody {
                @for s in &sessions {
                    tr.session {
                        td { a href={ "/sessions/" (format::segment(&s.session_id)) } { (format::cut(&s.session_id, 120).0) } }
                        td.mono { @if let Some(u) = s.user_id { a href={ "/?user=" (u) } { (u) } } }
                        td.n { (s.turns) }
                        td.t { (format::time(s.last_at)) }
                        td.n { (num(Some(s.total_tokens))) }
                        td.n { (cost(Some(s.cost_usd))) }
                        td.n { (s.errors) }
                    }
                }
            }
        }
        @if sessions.is_empty() { p.empty { "No sessions in this range." } }
    };
    Ok(page::layout("Sessions", "sessions", content))
}

/// One session.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let messages = query::chat_history(&state.pool, &id).await?;
    let traces = query::recent_traces(
        &state.pool,
        &TraceFilter {
            session_id: Some(id.clone()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await?;
    if messages.is_empty() && traces.items.is_empty() {
        return Err(WebError::NotFound(
            "no session with this id is stored".into(),
        ));
    }
    let tokens: i64 = traces
        .items
        .iter()
        .filter_map(|t| t.total_tokens)
        .fold(0, i64::saturating_add);
    let spent: Decimal = traces
        .items
        .iter()
        .filter_map(|t| t.total_cost_usd)
        .fold(Decimal::ZERO, |a, c| a.checked_add(c).unwrap_or(a));
    let user = traces
        .items
        .iter()
        .find_map(|t| t.user_id)
        .or(messages.first().map(|m| m.user_id));
    let content = html! {
        h1 { "Session " span #session-id { (format::cut(&id, 300).0) } }
        dl.facts {
            @if let Some(u) = user { dt { "User" } dd.mono { a href={ "/?user=" (u) } { (u) } } }
            dt { "Requests" } dd { (traces.items.len()) @if traces.next.is_some() { "+" } }
            dt { "Messages" } dd { (messages.len()) }
            dt { "Tokens" } dd { (num(Some(tokens))) }
            dt { "Cost" } dd { (cost(Some(spent))) }
            dt { "Traces" } dd { a href={ "/?session=" (format::segment(&id)) } { "list this session's traces" } }
        }
        h2 { "Transcript" }
        (chat::messages(&messages, true))
    };
    Ok(page::layout("Session", "sessions", content))
}
