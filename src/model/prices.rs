//! Model prices, for spans that report tokens but no cost: the user's patterns, then the
//! bundled default table (`data/prices.json`, compiled in).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use rust_decimal::Decimal;
use serde::Deserialize;

/// Per-1K-token prices of models, matched by name: the user's patterns first, then (for
/// [`bundled`](Self::bundled)) the default table this crate ships.
///
/// A pattern is a model name where `*` matches any run of characters (`gpt-4o-mini*`,
/// `claude-*-haiku*`); the first pattern that matches wins, so list specific patterns first.
/// The layer computes a span's cost from it only when the span gives no cost of its own, and
/// stores `cost_source = 'computed'` (given costs are stored with `'given'`).
///
/// The builder starts from [`PriceTable::bundled`]: current prices of common OpenAI, Anthropic,
/// Google, Mistral and embedding models, each dated in `data/prices.json`. Extend or override
/// it with `PriceTable::bundled().with(...)` (your patterns are tried first); replace it with
/// `PriceTable::empty().with(...)`; turn computed costs off with `PriceTable::empty()`.
///
/// ```
/// use tracing_postgres::{Decimal, PriceTable};
/// let prices = PriceTable::empty()
///     .with("gpt-4o-mini*", Decimal::new(15, 5), Decimal::new(60, 5)) // $0.00015 / $0.0006 per 1K
///     .with("gpt-4o*", Decimal::new(25, 4), Decimal::new(1, 2));
/// assert_eq!(prices.cost("gpt-4o-mini-2024-07-18", 1000, 1000), Some(Decimal::new(75, 5)));
/// assert_eq!(prices.cost("llama3", 1000, 1000), None);
///
/// // The bundled table: gpt-4o-mini at $0.15 / $0.60 per million tokens.
/// let bundled = PriceTable::bundled();
/// assert_eq!(bundled.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0), Some(Decimal::new(15, 2)));
/// // Yours first: a negotiated price for one model, the bundled ones for the rest.
/// let mine = PriceTable::bundled().with("gpt-4o-mini*", Decimal::new(1, 4), Decimal::new(4, 4));
/// assert_eq!(mine.cost("gpt-4o-mini", 1000, 0), Some(Decimal::new(1, 4)));
/// assert_eq!(mine.cost("gpt-4o", 1000, 0), Some(Decimal::new(25, 4)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// The user's patterns, tried in order.
    entries: Vec<Price>,
    /// The bundled table, tried after them; `None` for a table without it.
    bundled: Option<Arc<Bundled>>,
}

impl PartialEq for PriceTable {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.bundled.is_some() == other.bundled.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Price {
    pattern: String,
    rates: Rates,
}

/// The prices of one model, per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    input: Decimal,
    output: Decimal,
    /// Prompt tokens read from the vendor's cache; `None`: priced as input.
    cached_input: Option<Decimal>,
}

/// The bundled table, by model name.
#[derive(Debug, Default)]
struct Bundled {
    by_model: HashMap<String, Rates>,
}

/// The bundled prices as stored: dollars per million tokens, as the vendors list them.
const BUNDLED_JSON: &str = include_str!("../../data/prices.json");

/// The bundled table, parsed once. A file that does not parse (a test makes sure it does)
/// gives an empty table rather than a panic.
static BUNDLED: LazyLock<Arc<Bundled>> =
    LazyLock::new(|| Arc::new(parse_bundled(BUNDLED_JSON).unwrap_or_default()));

#[derive(Deserialize)]
struct BundledFile {
    models: Vec<BundledEntry>,
}

#[derive(Deserialize)]
struct BundledEntry {
    model: String,
    input: String,
    output: String,
    #[serde(default)]
    cached_input: Option<String>,
    /// The date the price was read from the vendor's page (checked by a test).
    #[allow(dead_code)]
    as_of: String,
}

fn parse_bundled(json: &str) -> Result<Bundled, String> {
    let file: BundledFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let per_1k = |s: &str| {
        Decimal::from_str(s.trim())
            .map(|per_million| per_million / Decimal::from(1000))
            .map_err(|e| format!("{s}: {e}"))
    };
    let mut by_model = HashMap::with_capacity(file.models.len());
    for e in file.models {
        let rates = Rates {
            input: per_1k(&e.input)?,
            output: per_1k(&e.output)?,
            cached_input: e.cached_input.as_deref().map(per_1k).transpose()?,
        };
        if by_model.insert(e.model.clone(), rates).is_some() {
            return Err(format!("{} is listed twice", e.model));
        }
    }
    Ok(Bundled { by_model })
}

impl Bundled {
    /// The rates of `model`: by its exact name, else with a `provider/` prefix and leading
    /// `vendor.` segments removed and then trailing dates, versions and `latest` / `preview`
    /// cut off one at a time (`gpt-4o-mini-2024-07-18`, `openai/gpt-4o`,
    /// `anthropic.claude-3-5-haiku-20241022-v1:0`, `claude-3-5-sonnet@20240620`).
    fn rates(&self, model: &str) -> Option<Rates> {
        if let Some(r) = self.by_model.get(model) {
            return Some(*r);
        }
        let mut name = model.rsplit('/').next().unwrap_or(model).trim();
        // Bedrock's `anthropic.` and `us.anthropic.`: segments of letters only (a version
        // such as `gemini-2.5` has digits before its dot).
        while let Some((head, rest)) = name.split_once('.')
            && !head.is_empty()
            && head.bytes().all(|b| b.is_ascii_alphabetic())
        {
            name = rest;
        }
        let lower = name.to_ascii_lowercase();
        let mut name = lower.as_str();
        // A handful of cuts at most: each removes one trailing segment.
        for _ in 0..8 {
            if let Some(r) = self.by_model.get(name) {
                return Some(*r);
            }
            let cut = name.rfind(['-', ':', '@'])?;
            let tail = &name[cut + 1..];
            let strippable = (tail.len() >= 2 && tail.bytes().all(|b| b.is_ascii_digit()))
                || matches!(tail, "latest" | "preview" | "exp" | "experimental")
                || (tail.len() >= 2
                    && tail.starts_with('v')
                    && tail[1..].bytes().all(|b| b.is_ascii_digit()))
                || (name.as_bytes()[cut] != b'-' && tail.bytes().all(|b| b.is_ascii_digit()));
            if !strippable {
                return None;
            }
            name = &name[..cut];
        }
        None
    }
}

impl PriceTable {
    /// An empty table: no cost is ever computed (the same as [`empty`](Self::empty)).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table: with it, no cost is ever computed; with patterns added, only theirs.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The bundled default prices (`data/prices.json` in the crate: common OpenAI,
    /// Anthropic, Google, Mistral and embedding models with input, output and cached-input
    /// prices, each with the date it was read from the vendor's price page). The builder's
    /// default.
    pub fn bundled() -> Self {
        Self {
            entries: Vec::new(),
            bundled: Some(Arc::clone(&BUNDLED)),
        }
    }

    /// Adds a model pattern with its input (prompt) and output (completion) prices per 1,000
    /// tokens, in US dollars. Patterns are tried in the order added, before the bundled table.
    pub fn with(
        mut self,
        pattern: impl Into<String>,
        input_per_1k: Decimal,
        output_per_1k: Decimal,
    ) -> Self {
        self.entries.push(Price {
            pattern: pattern.into(),
            rates: Rates {
                input: input_per_1k,
                output: output_per_1k,
                cached_input: None,
            },
        });
        self
    }

    /// Adds a model pattern as [`with`](Self::with) does, and the price per 1,000 prompt
    /// tokens read from the vendor's cache.
    pub fn with_cached(
        mut self,
        pattern: impl Into<String>,
        input_per_1k: Decimal,
        output_per_1k: Decimal,
        cached_input_per_1k: Decimal,
    ) -> Self {
        self.entries.push(Price {
            pattern: pattern.into(),
            rates: Rates {
                input: input_per_1k,
                output: output_per_1k,
                cached_input: Some(cached_input_per_1k),
            },
        });
        self
    }

    /// The cost of a call, when the table prices the model.
    pub fn cost(&self, model: &str, prompt_tokens: i64, completion_tokens: i64) -> Option<Decimal> {
        self.cost_with_cached(model, prompt_tokens, 0, completion_tokens)
    }

    /// The cost of a call of which `cached_tokens` of the `prompt_tokens` (the count includes
    /// them, as OpenAI and the OpenTelemetry GenAI conventions report it) were read from the
    /// vendor's cache, priced at the model's cached-input price where it has one.
    pub fn cost_with_cached(
        &self,
        model: &str,
        prompt_tokens: i64,
        cached_tokens: i64,
        completion_tokens: i64,
    ) -> Option<Decimal> {
        let rates = self
            .entries
            .iter()
            .find(|p| glob(&p.pattern, model))
            .map(|p| p.rates)
            .or_else(|| self.bundled.as_ref()?.rates(model))?;
        let prompt = prompt_tokens.max(0);
        let cached = cached_tokens.clamp(0, prompt);
        let (fresh, cached_cost) = match rates.cached_input {
            Some(rate) => (prompt - cached, rate.checked_mul(Decimal::from(cached))?),
            None => (prompt, Decimal::ZERO),
        };
        let input = rates.input.checked_mul(Decimal::from(fresh))?;
        let output = rates
            .output
            .checked_mul(Decimal::from(completion_tokens.max(0)))?;
        input
            .checked_add(cached_cost)?
            .checked_add(output)?
            .checked_div(Decimal::from(1000))
    }

    /// Whether the table prices no model at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.bundled.is_none()
    }
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
#[path = "prices_tests.rs"]
mod tests;
