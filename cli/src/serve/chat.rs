//! Chat messages as a transcript: each answer's citation markers linked to the sources they
//! cite, each source to its document.

use maud::{Markup, html};
use serde_json::Value;
use tracing_postgres::Uuid;
use tracing_postgres::query::Message;

use super::format::{self, MESSAGE_CHARS, ms, num};

/// Citations per message whose markers are looked for in its text.
const MAX_MARKERS: usize = 200;
/// Citation markers made links in one message.
const MAX_LINKS: usize = 2_000;

/// A message's citation: its marker and where it points.
struct Cite {
    marker: String,
    doc: Option<Uuid>,
    page: Option<i64>,
    section: Option<String>,
}

fn doc_id(v: &Value) -> Option<Uuid> {
    v.get("doc_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn citations(m: &Message) -> Vec<Cite> {
    m.citations
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            Some(Cite {
                marker: str_of(c, "marker").filter(|s| !s.is_empty())?.to_owned(),
                doc: doc_id(c),
                page: c.get("page").and_then(Value::as_i64),
                section: str_of(c, "section").map(str::to_owned),
            })
        })
        .take(MAX_MARKERS)
        .collect()
}

/// Where a citation's marker links: the message's source of the same document, else that
/// document's page.
fn cite_href(anchor: &str, sources: &[Value], c: &Cite) -> Option<String> {
    let doc = c.doc?;
    match sources.iter().position(|s| doc_id(s) == Some(doc)) {
        Some(k) => Some(format!("#{anchor}-s{k}")),
        None => Some(format!("/documents/{doc}")),
    }
}

/// A piece of a message's text: plain, or a citation marker with where it links.
enum Part<'a> {
    Text(&'a str),
    Cite(&'a str, Option<String>),
}

/// The text with each citation marker a link (at most [`MAX_LINKS`] of them: each marker's
/// places are found in one pass over the text, whatever the text and markers are).
fn content(text: &str, anchor: &str, sources: &[Value], cites: &[Cite]) -> Markup {
    let mut places: Vec<(usize, usize)> = Vec::new();
    for (i, c) in cites.iter().enumerate() {
        let room = MAX_LINKS.saturating_sub(places.len());
        places.extend(
            text.match_indices(c.marker.as_str())
                .take(room)
                .map(|(at, _)| (at, i)),
        );
    }
    places.sort_unstable();
    let mut parts: Vec<Part<'_>> = Vec::new();
    let mut done = 0;
    for (at, i) in places {
        // Overlapping markers: the first one wins.
        if at < done {
            continue;
        }
        let end = at + cites[i].marker.len();
        parts.push(Part::Text(&text[done..at]));
        parts.push(Part::Cite(
            &text[at..end],
            cite_href(anchor, sources, &cites[i]),
        ));
        done = end;
    }
    parts.push(Part::Text(&text[done..]));
    html! {
        @for part in parts {
            @match part {
                Part::Cite(s, Some(href)) => a.cite href=(href) { (s) },
                Part::Cite(s, None) => span.cite { (s) },
                Part::Text(s) => (s),
            }
        }
    }
}

/// The messages; `link_traces` adds a link to each message's trace (a session's page).
pub fn messages(msgs: &[Message], link_traces: bool) -> Markup {
    html! {
        div.transcript {
            @for (i, m) in msgs.iter().enumerate() {
                @let anchor = format!("m{i}");
                @let sources = m.sources.as_array().map(|a| a.as_slice()).unwrap_or_default();
                @let cites = citations(m);
                @let (shown, cut) = format::cut(&m.content, MESSAGE_CHARS);
                div.message.(role_class(&m.role)) id=(anchor) data-trace=(m.trace_id) {
                    div.who {
                        span.role { (format::cut(&m.role, 40).0) }
                        @if let Some(t) = m.turn_number { " · turn " (t) }
                        " · " (format::time(m.created_at))
                        @if let Some(r) = m.response_time_ms { " · " (ms(Some(r))) }
                        @if let Some(t) = m.prompt_tokens { " · " (num(Some(t))) " prompt tokens" }
                        @if let Some(t) = m.completion_tokens { " · " (num(Some(t))) " completion tokens" }
                        @if link_traces { " · " a.trace-link href={ "/traces/" (m.trace_id) } { "trace" } }
                    }
                    div.content { (content(shown, &anchor, sources, &cites)) @if cut { "…" } }
                    @if cut {
                        p.cut { "Cut. " a.full href={ "/traces/" (m.trace_id) "/full?message=" (m.id) "&field=content" } { "Show the whole message" } }
                    }
                    @if !sources.is_empty() {
                        details.sources open {
                            summary { "Sources (" (sources.len()) ")" }
                            ol {
                                @for (k, s) in sources.iter().enumerate().take(500) {
                                    li.source id={ (anchor) "-s" (k) } { (source(s)) }
                                }
                            }
                        }
                    }
                    @if !cites.is_empty() {
                        details.citations {
                            summary { "Citations (" (cites.len()) ")" }
                            ul {
                                @for c in &cites {
                                    li {
                                        @match cite_href(&anchor, sources, c) {
                                            Some(href) => a.cite href=(href) { (format::cut(&c.marker, 100).0) },
                                            None => span.cite { (format::cut(&c.marker, 100).0) },
                                        }
                                        @if let Some(p) = c.page { " page " (p) }
                                        @if let Some(s) = &c.section { " · " (format::cut(s, 300).0) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn role_class(role: &str) -> &'static str {
    match role {
        "user" => "user",
        "assistant" => "assistant",
        _ => "system",
    }
}

fn source(s: &Value) -> Markup {
    if !s.is_object() {
        return html! { pre.value { (format::json(s, 2_000).0) } };
    }
    let name = str_of(s, "doc_name").unwrap_or("(unnamed document)");
    html! {
        strong.doc-name { (format::cut(name, 300).0) }
        @if let Some(d) = doc_id(s) { " " a.doc href={ "/documents/" (d) } { "document " (d) } }
        @if let Some(c) = str_of(s, "chunk_id") { " · chunk " span.mono { (format::cut(c, 200).0) } }
        @if let Some(score) = s.get("score").and_then(Value::as_f64) { " · score " (format!("{score:.3}")) }
        @if let Some(e) = str_of(s, "excerpt") {
            @let (shown, cut) = format::cut(e, 1_000);
            blockquote.excerpt { (shown) @if cut { "…" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cite(marker: &str, doc: Option<Uuid>) -> Cite {
        Cite {
            marker: marker.into(),
            doc,
            page: None,
            section: None,
        }
    }

    #[test]
    fn markers_become_links_to_their_source_or_document_and_text_stays_text() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let sources = [serde_json::json!({"doc_id": a.to_string()})];
        let cites = [
            cite("[1]", Some(a)),
            cite("[2]", Some(b)),
            cite("<i>", None),
        ];
        let html = content("x [1] <i> y [1][2]", "m3", &sources, &cites).into_string();
        assert_eq!(
            html,
            format!(
                "x <a class=\"cite\" href=\"#m3-s0\">[1]</a> <span class=\"cite\">&lt;i&gt;</span> \
                 y <a class=\"cite\" href=\"#m3-s0\">[1]</a><a class=\"cite\" href=\"/documents/{b}\">[2]</a>"
            )
        );
    }

    #[test]
    fn overlapping_and_countless_markers_stay_bounded() {
        let text = "a".repeat(100_000);
        let cites = [cite("a", None), cite("aa", None)];
        let html = content(&text, "m0", &[], &cites).into_string();
        assert_eq!(html.matches("<span class=\"cite\">").count(), MAX_LINKS);
        assert!(html.ends_with(&"a".repeat(100)));
    }
}
