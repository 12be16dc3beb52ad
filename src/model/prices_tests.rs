use rust_decimal::Decimal;

use super::{BUNDLED_JSON, PriceTable, glob, parse_bundled};

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

#[test]
fn the_bundled_file_parses_and_every_entry_is_dated_and_sourced() {
    let bundled = parse_bundled(BUNDLED_JSON).expect("data/prices.json parses");
    assert!(bundled.by_model.len() >= 40, "{}", bundled.by_model.len());
    let file: serde_json::Value = serde_json::from_str(BUNDLED_JSON).unwrap();
    for entry in file["models"].as_array().unwrap() {
        let model = entry["model"].as_str().unwrap();
        let as_of = entry["as_of"].as_str().unwrap_or("");
        assert!(
            chrono::NaiveDate::parse_from_str(as_of, "%Y-%m-%d").is_ok(),
            "{model}: as_of {as_of:?}"
        );
        assert!(
            entry["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("https://")),
            "{model}"
        );
        assert_eq!(
            model,
            model.to_ascii_lowercase(),
            "names are stored lower case"
        );
    }
    for vendor in [
        "openai",
        "anthropic",
        "google",
        "mistral",
        "voyage",
        "cohere",
    ] {
        assert!(
            file["models"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["vendor"] == vendor),
            "{vendor}"
        );
    }
}

#[test]
fn a_file_with_a_bad_price_or_a_model_twice_is_refused() {
    let bad = r#"{"models":[{"model":"m","input":"x","output":"1","as_of":"2025-01-01"}]}"#;
    assert!(parse_bundled(bad).is_err());
    let twice = r#"{"models":[{"model":"m","input":"1","output":"1","as_of":"2025-01-01"},
                              {"model":"m","input":"2","output":"1","as_of":"2025-01-01"}]}"#;
    assert!(parse_bundled(twice).unwrap_err().contains("twice"));
}

/// Dollars per million tokens, as the vendors list them.
fn per_million(table: &PriceTable, model: &str) -> Option<(Decimal, Decimal)> {
    Some((
        table.cost(model, 1_000_000, 0)?,
        table.cost(model, 0, 1_000_000)?,
    ))
}

#[test]
fn bundled_names_match_with_dates_versions_and_prefixes() {
    let t = PriceTable::bundled();
    let mini = Some((Decimal::new(15, 2), Decimal::new(60, 2)));
    for name in [
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "openai/gpt-4o-mini",
        "GPT-4o-mini",
    ] {
        assert_eq!(per_million(&t, name), mini, "{name}");
    }
    // The longer name is not taken for the shorter one, nor the reverse.
    assert_eq!(
        per_million(&t, "gpt-4o-2024-08-06"),
        Some((Decimal::new(250, 2), Decimal::new(1000, 2)))
    );
    let haiku = Some((Decimal::new(80, 2), Decimal::new(400, 2)));
    for name in [
        "claude-3-5-haiku-latest",
        "claude-3-5-haiku-20241022",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "claude-3-5-haiku@20241022",
    ] {
        assert_eq!(per_million(&t, name), haiku, "{name}");
    }
    assert_eq!(
        per_million(&t, "gemini-2.5-flash-preview-05-20"),
        Some((Decimal::new(30, 2), Decimal::new(250, 2)))
    );
    assert_eq!(
        per_million(&t, "models/gemini-2.5-flash-lite"),
        Some((Decimal::new(10, 2), Decimal::new(40, 2)))
    );
    assert_eq!(
        per_million(&t, "mistral-large-2411"),
        Some((Decimal::new(2, 0), Decimal::new(6, 0)))
    );
    assert_eq!(
        t.cost("text-embedding-3-small", 1_000_000, 0),
        Some(Decimal::new(2, 2))
    );
    // A single-digit version is a different model, not a dated one: no price rather than a
    // wrong one.
    assert_eq!(t.cost("claude-opus-4-7", 1000, 1000), None);
    assert_eq!(t.cost("llama3.1:8b", 1000, 1000), None);
    assert_eq!(t.cost("", 1000, 1000), None);
}

#[test]
fn cached_prompt_tokens_are_priced_at_the_cached_rate() {
    let t = PriceTable::bundled();
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per million.
    assert_eq!(
        t.cost_with_cached("gpt-4o", 1_000_000, 400_000, 0),
        Some(Decimal::new(200, 2)) // 600K × 2.50 + 400K × 1.25
    );
    // More cached than prompt tokens: clamped.
    assert_eq!(
        t.cost_with_cached("gpt-4o", 1_000, 5_000, 0),
        t.cost_with_cached("gpt-4o", 1_000, 1_000, 0)
    );
    // No cached price (a user's pattern): every prompt token at the input price.
    let mine = PriceTable::empty().with("m", Decimal::ONE, Decimal::ONE);
    assert_eq!(mine.cost_with_cached("m", 1000, 600, 0), Some(Decimal::ONE));
    let cached = PriceTable::empty().with_cached("m", Decimal::ONE, Decimal::ONE, Decimal::ZERO);
    assert_eq!(
        cached.cost_with_cached("m", 1000, 600, 0),
        Some(Decimal::new(4, 1))
    );
}

#[test]
fn the_users_patterns_come_first_and_empty_prices_nothing() {
    let mine = PriceTable::bundled().with("gpt-4o*", Decimal::ONE, Decimal::ONE);
    assert_eq!(mine.cost("gpt-4o-mini", 1000, 0), Some(Decimal::ONE));
    assert_eq!(
        mine.cost("claude-3-haiku", 1_000_000, 0),
        Some(Decimal::new(25, 2))
    );
    assert!(PriceTable::empty().is_empty());
    assert!(!PriceTable::bundled().is_empty());
    assert_eq!(PriceTable::empty().cost("gpt-4o", 1000, 1000), None);
    let only_mine = PriceTable::empty().with("x", Decimal::ONE, Decimal::ONE);
    assert_eq!(only_mine.cost("gpt-4o", 1000, 1000), None);
    // Huge counts overflow to no cost, never to a panic.
    assert_eq!(
        PriceTable::empty()
            .with("m", Decimal::MAX, Decimal::MAX)
            .cost("m", i64::MAX, i64::MAX),
        None
    );
    assert_eq!(
        PriceTable::bundled().cost("gpt-4o", -5, -5),
        Some(Decimal::ZERO)
    );
}
