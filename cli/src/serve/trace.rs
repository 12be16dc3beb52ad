//! `/traces/{id}`: one trace as a waterfall, the selected span's every column, the trace's
//! chat messages with their citations and sources, and its document steps.
//!
//! A span's detail is rendered on its own (`/traces/{id}/spans/{span}`), which the script
//! fetches when a row is selected; without the script the row's link reloads the page with
//! `?span=` and the detail rendered in place. Rows carry no detail, so a trace of thousands
//! of spans stays a page of small rows, whose subtrees the script folds.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use tracing_postgres::Uuid;
use tracing_postgres::query::{self, Span, Trace, TraceTree};

use super::error::WebError;
use super::format::{self, INLINE_CHARS, cost, ms, num};
use super::{AppState, chat, documents, page};

/// How far around a trace's time its messages and document steps are looked for.
const BEFORE: TimeDelta = TimeDelta::hours(1);
const AFTER: TimeDelta = TimeDelta::days(1);
/// The deepest indentation drawn; deeper spans show their depth as a number.
const MAX_INDENT: usize = 30;

/// `?span=` selects a span.
#[derive(Debug, Deserialize)]
pub struct TraceQuery {
    #[serde(default)]
    span: Option<String>,
}

async fn load(state: &AppState, id: &str) -> Result<(Uuid, TraceTree), WebError> {
    let id = format::parse_id(id)?;
    match query::trace_tree(&state.pool, id).await? {
        Some(tree) => Ok((id, tree)),
        None => Err(WebError::NotFound(format!("no trace {id} is stored"))),
    }
}

/// The page.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TraceQuery>,
) -> Result<Html<String>, WebError> {
    let (id, tree) = load(&state, &id).await?;
    let (start, end) = tree.bounds().unwrap_or_else(|| (Utc::now(), Utc::now()));
    let messages = query::trace_messages(&state.pool, id, start - BEFORE, end + AFTER).await?;
    let steps = query::trace_document_steps(&state.pool, id, start - BEFORE, end + AFTER).await?;
    let selected = match q.span.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            let sid = format::parse_id(s)?;
            tree.spans.iter().find(|sp| sp.id == sid)
        }
        None => None,
    };
    let name = tree
        .trace
        .as_ref()
        .map_or("(trace row not stored)", |t| &t.name);
    let title = format::cut(name, 80).0.to_owned();
    let content = html! {
        (header(id, tree.trace.as_ref(), tree.spans.len()))
        h2 { "Waterfall" }
        p.hint { "Select a span to see all it holds; ▾ folds its subtree." }
        (waterfall(id, &tree, start, end))
        section #detail.detail aria-live="polite" {
            @match selected {
                Some(s) => (span_detail(id, s)),
                None => p.hint { "No span selected." },
            }
        }
        @if !messages.is_empty() {
            h2 { "Chat messages" }
            (chat::messages(&messages, false))
        }
        @if !steps.is_empty() {
            h2 { "Document steps" }
            (documents::steps(&steps, true))
        }
    };
    Ok(page::layout(&title, "traces", content))
}

fn header(id: Uuid, trace: Option<&Trace>, spans: usize) -> Markup {
    html! {
        @match trace {
            Some(t) => {
                h1 { span #trace-name { (format::cut(&t.name, 300).0) } " " span.status.(status_class(&t.status)) { (t.status) } }
                dl.facts {
                    dt { "Trace id" } dd.mono { (t.id) " · " (t.w3c_id()) }
                    dt { "Operation" } dd { a href={ "/?op=" (format::segment(&t.operation_type)) } { (t.operation_type) } }
                    dt { "Started (UTC)" } dd { (format::time(t.started_at)) }
                    dt { "Duration" } dd { (ms(t.duration_ms)) @if t.ended_at.is_none() { " (in progress)" } }
                    dt { "Tokens" } dd { (num(t.total_tokens)) " (" (num(t.prompt_tokens)) " prompt, " (num(t.completion_tokens)) " completion)" }
                    dt { "Cost" } dd { (cost(t.total_cost_usd)) }
                    dt { "Spans" } dd { (spans) }
                    @if let Some(u) = t.user_id { dt { "User" } dd.mono { a href={ "/?user=" (u) } { (u) } } }
                    @if let Some(s) = &t.session_id { dt { "Session" } dd { a href={ "/sessions/" (format::segment(s)) } { (format::cut(s, 200).0) } } }
                    @if let Some(k) = t.kb_id { dt { "Knowledge base" } dd.mono { a href={ "/?kb=" (k) } { (k) } } }
                    @if t.error_type.is_some() || t.error_message.is_some() {
                        dt { "Error" } dd.err {
                            (t.error_type.as_deref().unwrap_or("")) ": "
                            (format::long_text(t.error_message.as_deref().unwrap_or(""), INLINE_CHARS, None))
                        }
                    }
                }
                @if !is_empty_json(&t.metadata) {
                    details.meta { summary { "Trace metadata" } (format::json_block(&t.metadata, None)) }
                }
            }
            None => {
                h1 { "Trace " (id) }
                p.hint { "The trace's row is not stored (refused, or still queued); its " (spans) " spans are." }
            }
        }
    }
}

fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn status_class(s: &str) -> &'static str {
    match s {
        "error" => "error",
        "in_progress" => "open",
        _ => "ok",
    }
}

/// Milliseconds from `a` to `b`.
fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a)
        .num_microseconds()
        .map_or(0.0, |us| us as f64 / 1000.0)
}

fn waterfall(id: Uuid, tree: &TraceTree, start: DateTime<Utc>, end: DateTime<Utc>) -> Markup {
    let rows = tree.walk();
    let total = between(start, end).max(0.001);
    html! {
        div.waterfall #waterfall data-trace=(id) {
            div.wrow.whead {
                span.wname { "Span" } span.wtype { "Type" } span.wmodel { "Model" }
                span.wnum { "Tokens" } span.wnum { "Cost" } span.wnum { "Duration" }
                span.wbar { "0 … " (format::ms(Some(total))) }
            }
            @for (i, (depth, s)) in rows.iter().enumerate() {
                @let parent = rows.get(i + 1).is_some_and(|(d, _)| d > depth);
                @let open = s.ended_at.is_none() || s.status == "in_progress";
                @let x = (between(start, s.started_at) / total * 1000.0).clamp(0.0, 1000.0);
                @let w = match s.ended_at {
                    Some(e) => between(s.started_at, e),
                    None => between(s.started_at, end),
                };
                @let w = (w / total * 1000.0).clamp(2.0, (1000.0 - x).max(2.0));
                div.wrow.span.(format!("d{}", (*depth).min(MAX_INDENT)))
                    .error[s.status == "error"] .open[open]
                    data-depth=(depth) data-span=(s.id) {
                    span.wname {
                        @if parent { button.tog type="button" aria-expanded="true" title="Fold" { "▾" } }
                        @else { span.leaf {} }
                        @if *depth > MAX_INDENT { span.depth { (depth) " " } }
                        a.sel href={ "/traces/" (id) "?span=" (s.id) "#detail" } data-span=(s.id) { (format::cut(&s.name, 120).0) }
                        @if open { span.badge.open { "in progress" } }
                        @if s.status == "error" { span.badge.error { (format::cut(s.error_type.as_deref().unwrap_or("error"), 40).0) } }
                    }
                    span.wtype { (format::cut(&s.span_type, 40).0) }
                    span.wmodel { (s.model.as_deref().map_or("", |m| format::cut(m, 60).0)) }
                    span.wnum { (num(s.tokens())) }
                    span.wnum { (cost(s.cost_usd)) }
                    span.wnum { (ms(s.duration_ms)) }
                    span.wbar {
                        svg viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" {
                            rect x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="10" {}
                        }
                    }
                }
            }
        }
    }
}

/// A link to a whole stored value of a span.
fn full_href(trace: Uuid, span: Uuid, field: &str) -> String {
    format!("/traces/{trace}/full?span={span}&field={field}")
}

/// Every column of a span.
pub fn span_detail(trace: Uuid, s: &Span) -> Markup {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
    let scalars: Vec<(&str, String)> = vec![
        ("Span id", s.id.to_string()),
        ("Parent", opt(s.parent_span_id.map(|p| p.to_string()))),
        ("Type", s.span_type.clone()),
        ("Status", s.status.clone()),
        ("Started (UTC)", format::time(s.started_at)),
        ("Ended (UTC)", opt(s.ended_at.map(format::time))),
        ("Duration", ms(s.duration_ms)),
        ("Model", opt(s.model.clone())),
        ("Prompt tokens", num(s.prompt_tokens)),
        ("Completion tokens", num(s.completion_tokens)),
        ("Cost", cost(s.cost_usd)),
        ("Cost source", opt(s.cost_source.clone())),
        ("Temperature", opt(s.temperature.map(|t| t.to_string()))),
        ("Embedding model", opt(s.embedding_model.clone())),
        ("Vectors", num(s.vector_count)),
        ("Dimensions", num(s.vector_dimensions.map(i64::from))),
        ("Results", num(s.result_count.map(i64::from))),
        ("Top score", opt(s.top_score.map(|t| t.to_string()))),
        ("File type", opt(s.file_type.clone())),
        ("File size (bytes)", num(s.file_size_bytes)),
        ("Pages", num(s.page_count.map(i64::from))),
        ("Chunks", num(s.chunk_count.map(i64::from))),
        ("Chunk strategy", opt(s.chunk_strategy.clone())),
        ("Vectors upserted", num(s.vectors_upserted)),
        ("Collection", opt(s.collection_name.clone())),
        ("Error type", opt(s.error_type.clone())),
    ];
    let texts: [(&str, &str, Option<&str>); 4] = [
        ("Error message", "error_message", s.error_message.as_deref()),
        ("Query text", "query_text", s.query_text.as_deref()),
        ("Input preview", "input_preview", s.input_preview.as_deref()),
        (
            "Output preview",
            "output_preview",
            s.output_preview.as_deref(),
        ),
    ];
    let events = s.metadata.get("events").filter(|e| !e.is_null());
    html! {
        div.span-detail #span-detail data-span=(s.id) {
            h2 { "Span: " span #detail-name { (format::cut(&s.name, 300).0) } }
            table.kv {
                @for (k, v) in &scalars {
                    @if v != "—" { tr { th { (k) } td { (format::cut(v, 2_000).0) } } }
                }
            }
            @for (label, field, value) in texts {
                @if let Some(v) = value {
                    h3 { (label) }
                    (format::long_text(v, INLINE_CHARS, Some(&full_href(trace, s.id, field))))
                }
            }
            @if let Some(e) = events {
                h3 { "Events" }
                (format::json_block(e, Some(&full_href(trace, s.id, "metadata"))))
            }
            h3 { "Metadata" }
            (format::json_block(&s.metadata, Some(&full_href(trace, s.id, "metadata"))))
        }
    }
}

/// One span's detail alone, for the script.
pub async fn span_fragment(
    State(state): State<AppState>,
    Path((id, span)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (id, tree) = load(&state, &id).await?;
    let span = format::parse_id(&span)?;
    let s = tree
        .spans
        .iter()
        .find(|s| s.id == span)
        .ok_or_else(|| WebError::NotFound(format!("no span {span} in trace {id}")))?;
    Ok(Html(span_detail(id, s).into_string()).into_response())
}

/// `?span=&field=` or `?message=&field=`: which whole value.
#[derive(Debug, Deserialize)]
pub struct FullQuery {
    #[serde(default)]
    span: Option<String>,
    #[serde(default)]
    message: Option<String>,
    field: String,
}

/// One whole stored value as plain text (never HTML: the browser shows it as it is).
pub async fn full_value(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FullQuery>,
) -> Result<Response, WebError> {
    let (id, tree) = load(&state, &id).await?;
    let unknown = || WebError::BadRequest("no such field".to_owned());
    let text = if let Some(span) = q.span.as_deref() {
        let span = format::parse_id(span)?;
        let s = tree
            .spans
            .iter()
            .find(|s| s.id == span)
            .ok_or_else(|| WebError::NotFound(format!("no span {span} in trace {id}")))?;
        match q.field.as_str() {
            "error_message" => s.error_message.clone().unwrap_or_default(),
            "query_text" => s.query_text.clone().unwrap_or_default(),
            "input_preview" => s.input_preview.clone().unwrap_or_default(),
            "output_preview" => s.output_preview.clone().unwrap_or_default(),
            "metadata" => serde_json::to_string_pretty(&s.metadata).unwrap_or_default(),
            _ => return Err(unknown()),
        }
    } else if let Some(message) = q.message.as_deref() {
        let mid = format::parse_id(message)?;
        let (start, end) = tree.bounds().unwrap_or_else(|| (Utc::now(), Utc::now()));
        let messages = query::trace_messages(&state.pool, id, start - BEFORE, end + AFTER).await?;
        let m = messages
            .iter()
            .find(|m| m.id == mid)
            .ok_or_else(|| WebError::NotFound(format!("no message {mid} in trace {id}")))?;
        match q.field.as_str() {
            "content" => m.content.clone(),
            "sources" => serde_json::to_string_pretty(&m.sources).unwrap_or_default(),
            "citations" => serde_json::to_string_pretty(&m.citations).unwrap_or_default(),
            _ => return Err(unknown()),
        }
    } else {
        return Err(unknown());
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // Shown as text even if a browser were to guess; nothing in it may run.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ),
        ],
        text,
    )
        .into_response())
}
