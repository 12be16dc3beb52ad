//! `/`: recent traces, filtered by the query string and keyset-paged; and the rows of its
//! first page as a fragment, which the script polls to show new traces live.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use tracing_postgres::Uuid;
use tracing_postgres::query::{self, Cursor, Trace, TraceFilter};

use super::error::WebError;
use super::format::{self, cost, ms, num};
use super::{AppState, page};

/// The filter in the query string; every field is text, parsed here so a bad one gets a page
/// that says which.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TracesQuery {
    #[serde(default, skip_serializing_if = "is_blank")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    to: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    op: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    kb: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    q: Option<String>,
    #[serde(default, skip_serializing_if = "is_blank")]
    before: Option<String>,
}

fn is_blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

fn field(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A `since` parameter, trimmed (`default` when missing or blank), and the time it names.
pub fn since_param<'a>(
    since: Option<&'a str>,
    default: &'a str,
    now: DateTime<Utc>,
) -> Result<(&'a str, DateTime<Utc>), WebError> {
    let since = since
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(default);
    Ok((since, parse_time(since, now)?))
}

/// A time in the query string: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (UTC, as a
/// `datetime-local` input sends it), or a span of time back from now (`15m`, `24h`, `7d`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, WebError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = humantime::parse_duration(s)
        && let Ok(d) = chrono::TimeDelta::from_std(d)
        && let Some(t) = now.checked_sub_signed(d)
    {
        return Ok(t);
    }
    Err(WebError::BadRequest(format!(
        "not a time: {s:?} (RFC 3339, YYYY-MM-DDTHH:MM in UTC, or a span back from now such as 24h)"
    )))
}

/// The cursor as text: microseconds since the epoch, then the id.
fn cursor_text(c: &Cursor) -> String {
    format!("{}_{}", c.started_at.timestamp_micros(), c.id.simple())
}

fn parse_cursor(s: &str) -> Result<Cursor, WebError> {
    let bad = || WebError::BadRequest("not a page cursor".to_owned());
    let (micros, id) = s.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(Cursor {
        started_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        id: Uuid::parse_str(id).map_err(|_| bad())?,
    })
}

impl TracesQuery {
    fn filter(&self) -> Result<TraceFilter, WebError> {
        let now = Utc::now();
        let uuid = |v: &Option<String>, what: &str| {
            field(v)
                .map(|s| {
                    Uuid::parse_str(&s)
                        .map_err(|_| WebError::BadRequest(format!("the {what} is not a UUID")))
                })
                .transpose()
        };
        let status = field(&self.status);
        if let Some(s) = &status
            && !matches!(s.as_str(), "success" | "error" | "in_progress")
        {
            return Err(WebError::BadRequest(
                "status is success, error or in_progress".to_owned(),
            ));
        }
        Ok(TraceFilter {
            operation_type: field(&self.op),
            status,
            user_id: uuid(&self.user, "user")?,
            kb_id: uuid(&self.kb, "knowledge base")?,
            session_id: field(&self.session),
            from: field(&self.from).map(|s| parse_time(&s, now)).transpose()?,
            to: field(&self.to).map(|s| parse_time(&s, now)).transpose()?,
            text: field(&self.q),
            before: field(&self.before).map(|s| parse_cursor(&s)).transpose()?,
            model: field(&self.model),
            limit: 50,
            ..Default::default()
        })
    }

    /// The query string of this filter, with another page cursor.
    fn href(&self, before: Option<String>) -> String {
        let q = TracesQuery {
            before,
            ..self.clone()
        };
        match serde_urlencoded::to_string(&q) {
            Ok(s) if !s.is_empty() => format!("/?{s}"),
            _ => "/".to_owned(),
        }
    }
}

/// The page.
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<TracesQuery>,
) -> Result<Html<String>, WebError> {
    let filter = params.filter()?;
    let page = query::recent_traces(&state.pool, &filter).await?;
    let counts = query::span_counts(&state.pool, &page.items).await?;
    let first_page = filter.before.is_none();
    let live_src = {
        let q = TracesQuery {
            before: None,
            ..params.clone()
        };
        let s = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("/fragments/traces?{s}")
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let content = html! {
        h1 { "Traces" }
        form.filters method="get" action="/" {
            label { "From " input name="from" value=(v(&params.from)) placeholder="24h or 2026-12-01T00:00"; }
            label { "To " input name="to" value=(v(&params.to)) placeholder="(now)"; }
            label { "Operation " input name="op" value=(v(&params.op)) placeholder="chat"; }
            label { "Status "
                select name="status" {
                    @for (value, label) in [("", "any"), ("success", "success"), ("error", "error"), ("in_progress", "in progress")] {
                        option value=(value) selected[params.status.as_deref().unwrap_or("") == value] { (label) }
                    }
                }
            }
            label { "User " input name="user" value=(v(&params.user)) placeholder="UUID"; }
            label { "Session " input name="session" value=(v(&params.session)); }
            label { "KB " input name="kb" value=(v(&params.kb)) placeholder="UUID"; }
            label { "Model " input name="model" value=(v(&params.model)); }
            label { "Text " input name="q" value=(v(&params.q)) placeholder="in name or error"; }
            button type="submit" { "Filter" }
            a href="/" { "Clear" }
        }
        @if first_page {
            p.live #live-status { "Live: new traces appear at the top." }
        }
        table.list #traces {
            thead { tr {
                th { "Name" } th { "Start (UTC)" } th.n { "Duration" } th.n { "Tokens" }
                th.n { "Cost" } th { "Status" } th.n { "Spans" }
            } }
            @if first_page {
                tbody #trace-rows data-live-src=(live_src) { (rows(&page.items, &counts)) }
            } @else {
                tbody #trace-rows { (rows(&page.items, &counts)) }
            }
        }
        @if page.items.is_empty() { p.empty { "No traces match." } }
        nav.pager {
            @if !first_page { a href=(params.href(None)) { "← Newest" } }
            @if let Some(next) = &page.next {
                a #next-page href=(params.href(Some(cursor_text(next)))) { "Older →" }
            }
        }
    };
    Ok(page::layout("Traces", "traces", content))
}

/// The rows of the first page, for the live list.
pub async fn fragment(
    State(state): State<AppState>,
    Query(params): Query<TracesQuery>,
) -> Result<Response, WebError> {
    let mut filter = params.filter()?;
    filter.before = None;
    let page = query::recent_traces(&state.pool, &filter).await?;
    let counts = query::span_counts(&state.pool, &page.items).await?;
    Ok(Html(rows(&page.items, &counts).into_string()).into_response())
}

fn rows(traces: &[Trace], counts: &HashMap<Uuid, i64>) -> Markup {
    html! {
        @for t in traces {
            tr.trace data-id=(t.id) .error[t.status == "error"] .open[t.status == "in_progress"] {
                td { a href={ "/traces/" (t.id) } { (format::cut(&t.name, 200).0) } }
                td.t { (format::time(t.started_at)) }
                td.n { (ms(t.duration_ms)) }
                td.n { (num(t.total_tokens)) }
                td.n { (cost(t.total_cost_usd)) }
                td { span.status { (t.status) } }
                td.n { (num(counts.get(&t.id).copied())) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_each_accepted_form() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        let noon = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        assert_eq!(parse_time("2026-12-07T12:00:00Z", now).unwrap(), noon);
        assert_eq!(parse_time("2026-12-07T12:00", now).unwrap(), noon);
        assert_eq!(
            parse_time("24h", now).unwrap(),
            noon - chrono::TimeDelta::hours(24)
        );
        assert!(parse_time("<script>", now).is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            started_at: DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(parse_cursor(&cursor_text(&c)).unwrap(), c);
        assert!(parse_cursor("1_x").is_err());
    }
}
