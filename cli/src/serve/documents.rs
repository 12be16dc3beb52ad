//! `/documents/{id}`: a document's ingestion steps as a timeline; `/documents`: the recent
//! failed steps of every document.

use axum::extract::{Path, Query, State};
use axum::response::Html;
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use tracing_postgres::query::{self, DocumentStep};

use super::error::WebError;
use super::format::{self, INLINE_CHARS, ms, num};
use super::traces::since_param;
use super::{AppState, page};

/// `?since=7d` (default): how far back failed steps are listed.
#[derive(Debug, Deserialize)]
pub struct FailedQuery {
    #[serde(default)]
    since: Option<String>,
}

fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a)
        .num_microseconds()
        .map_or(0.0, |us| us as f64 / 1000.0)
}

/// The figures a step has, as `label value` pairs.
fn figures(s: &DocumentStep) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut put = |k: &'static str, v: Option<i64>| {
        if let Some(v) = v {
            out.push((k, num(Some(v))));
        }
    };
    put("pages", s.extracted_pages.map(i64::from));
    put("chars", s.extracted_chars);
    put("tables", s.tables_found.map(i64::from));
    put("images", s.images_found.map(i64::from));
    put("chunks", s.chunks_created.map(i64::from));
    put("avg chunk", s.avg_chunk_size.map(i64::from));
    put("vectors", s.vectors_generated);
    put("upserted", s.vectors_upserted);
    if let Some(m) = &s.embedding_model {
        out.push(("model", format::cut(m, 80).0.to_owned()));
    }
    if let Some(c) = &s.collection_name {
        out.push(("collection", format::cut(c, 80).0.to_owned()));
    }
    out
}

/// The steps as a table, with a timeline for one document's; `link_document` (steps of many
/// documents) links each to its document's page instead.
pub fn steps(steps: &[DocumentStep], link_document: bool) -> Markup {
    let start = steps.iter().map(|s| s.started_at).min();
    let end = steps
        .iter()
        .map(|s| s.completed_at.unwrap_or(s.started_at))
        .chain(steps.iter().map(|s| s.started_at))
        .max();
    let total = match (start, end) {
        (Some(a), Some(b)) => between(a, b).max(0.001),
        _ => 1.0,
    };
    html! {
        table.list.steps {
            thead { tr {
                th { "Step" } th { "Status" } th { "Started (UTC)" } th.n { "Duration" }
                th { "Figures" } th { "Error" } th.n { "Retries" }
                @if link_document { th { "Document" } }
                th { "Trace" }
                // One document's steps share a time axis; steps of many documents do not.
                @if !link_document { th.wbar { "Timeline" } }
            } }
            tbody {
                @for s in steps {
                    @let x = start.map_or(0.0, |a| (between(a, s.started_at) / total * 1000.0).clamp(0.0, 1000.0));
                    @let w = s.completed_at.map_or(2.0, |e| between(s.started_at, e) / total * 1000.0).clamp(2.0, (1000.0 - x).max(2.0));
                    tr.step .error[s.status == "failed"] {
                        td { (format::cut(&s.event_type, 40).0) }
                        td { span.status { (format::cut(&s.status, 40).0) } }
                        td.t { (format::time(s.started_at)) }
                        td.n { (ms(s.duration_ms)) }
                        td { @for (k, v) in figures(s) { span.fig { (k) " " (v) } " " } }
                        td.err {
                            @if let Some(t) = &s.error_type { strong { (format::cut(t, 200).0) } ": " }
                            @if let Some(m) = &s.error_message { (format::long_text(m, INLINE_CHARS, None)) }
                            @if let Some(r) = s.retryable { @if r { " (retryable)" } @else { " (not retryable)" } }
                        }
                        td.n { (num(s.retry_count.map(i64::from))) }
                        @if link_document { td.mono { a href={ "/documents/" (s.document_id) } { (s.document_id) } } }
                        td.nowrap { a href={ "/traces/" (s.trace_id) } { "trace" } }
                        @if !link_document {
                            td.wbar {
                                svg viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" {
                                    rect x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="10" {}
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One document.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let id = format::parse_id(&id)?;
    let timeline = query::document_timeline(&state.pool, id).await?;
    let failed = query::failed_steps(&state.pool, Utc::now() - TimeDelta::days(7), 50).await?;
    let retries: i64 = timeline
        .iter()
        .filter_map(|s| s.retry_count.map(i64::from))
        .sum();
    let content = html! {
        h1 { "Document " span.mono #document-id { (id) } }
        @if timeline.is_empty() {
            p.empty { "No ingestion steps of this document are stored." }
        } @else {
            dl.facts {
                dt { "Steps" } dd { (timeline.len()) }
                dt { "Failed" } dd { (timeline.iter().filter(|s| s.status == "failed").count()) }
                dt { "Retries" } dd { (retries) }
                @if let Some(k) = timeline.iter().find_map(|s| s.kb_id) { dt { "Knowledge base" } dd.mono { (k) } }
            }
            h2 { "Ingestion timeline" }
            (steps(&timeline, false))
        }
        h2 { "Recent failed ingestion steps (7 days)" }
        (steps(&failed, true))
    };
    Ok(page::layout("Document", "documents", content))
}

/// The failed steps of every document.
pub async fn failed(
    State(state): State<AppState>,
    Query(q): Query<FailedQuery>,
) -> Result<Html<String>, WebError> {
    let now = Utc::now();
    let (since, from) = since_param(q.since.as_deref(), "7d", now)?;
    let failed = query::failed_steps(&state.pool, from, 200).await?;
    let content = html! {
        h1 { "Failed ingestion steps" }
        form.filters method="get" action="/documents" {
            label { "Since " input name="since" value=(since); }
            button type="submit" { "Show" }
        }
        @if failed.is_empty() { p.empty { "No failed steps in this range." } }
        @else { (steps(&failed, true)) }
    };
    Ok(page::layout("Documents", "documents", content))
}
