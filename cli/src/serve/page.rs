//! The frame of every page: head, navigation, the one stylesheet and script.

use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

/// A whole page: `active` names the navigation entry to mark (`traces`, `sessions`,
/// `documents`, `usage`, or empty).
pub fn layout(title: &str, active: &str, content: Markup) -> Html<String> {
    let nav = [
        ("traces", "/", "Traces"),
        ("sessions", "/sessions", "Sessions"),
        ("documents", "/documents", "Documents"),
        ("usage", "/usage", "Usage"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tracing-postgres" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "tracing-postgres" }
                    nav {
                        @for (key, href, label) in nav {
                            a.active[key == active] href=(href) { (label) }
                        }
                    }
                }
                main { (content) }
            }
        }
    };
    Html(markup.into_string())
}
