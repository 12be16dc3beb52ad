//! Model prices, for spans that report tokens but no cost.

use rust_decimal::Decimal;

/// Per-1K-token prices of models, matched by name pattern.
///
/// A pattern is a model name where `*` matches any run of characters (`gpt-4o-mini*`,
/// `claude-*-haiku*`); the first pattern that matches wins, so list specific patterns first.
/// The layer computes a span's cost from it only when the span gives no cost of its own, and
/// stores `cost_source = 'computed'` (given costs are stored with `'given'`).
///
/// ```
/// use tracing_postgres::{Decimal, PriceTable};
/// let prices = PriceTable::new()
///     .with("gpt-4o-mini*", Decimal::new(15, 5), Decimal::new(60, 5)) // $0.00015 / $0.0006 per 1K
///     .with("gpt-4o*", Decimal::new(25, 4), Decimal::new(1, 2));
/// assert_eq!(prices.cost("gpt-4o-mini-2024-07-18", 1000, 1000), Some(Decimal::new(75, 5)));
/// assert_eq!(prices.cost("llama3", 1000, 1000), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    entries: Vec<Price>,
}

#[derive(Debug, Clone, PartialEq)]
struct Price {
    pattern: String,
    input_per_1k: Decimal,
    output_per_1k: Decimal,
}

impl PriceTable {
    /// An empty table: no cost is ever computed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model pattern with its input (prompt) and output (completion) prices per 1,000
    /// tokens, in US dollars.
    pub fn with(
        mut self,
        pattern: impl Into<String>,
        input_per_1k: Decimal,
        output_per_1k: Decimal,
    ) -> Self {
        self.entries.push(Price {
            pattern: pattern.into(),
            input_per_1k,
            output_per_1k,
        });
        self
    }

    /// The cost of a call, when a pattern matches the model.
    pub fn cost(&self, model: &str, prompt_tokens: i64, completion_tokens: i64) -> Option<Decimal> {
        let p = self.entries.iter().find(|p| glob(&p.pattern, model))?;
        let thousand = Decimal::from(1000);
        let input = p
            .input_per_1k
            .checked_mul(Decimal::from(prompt_tokens.max(0)))?;
        let output = p
            .output_per_1k
            .checked_mul(Decimal::from(completion_tokens.max(0)))?;
        input.checked_add(output)?.checked_div(thousand)
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob("gpt-4o", "gpt-4o"));
        assert!(!glob("gpt-4o", "gpt-4o-mini"));
        assert!(glob("gpt-4o*", "gpt-4o-mini"));
        assert!(glob("*mini", "gpt-4o-mini"));
        assert!(glob("claude-*-haiku*", "claude-3-5-haiku-latest"));
        assert!(!glob("claude-*-haiku*", "claude-3-opus"));
        assert!(glob("*", ""));
        assert!(!glob("a*b*c", "acb"));
    }
}
