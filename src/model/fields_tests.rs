//! Unit tests of the captured fields.

use super::*;

fn sample(extra: usize) -> Fields {
    let mut f = Fields::default();
    f.put("gen_ai.request.model", Val::S("alias".into()));
    f.put("model", Val::S("gpt-4o-mini".into()));
    f.put("prompt_tokens", Val::I(12));
    for i in 0..extra {
        let name: &'static str = ["route", "attempt", "score", "region", "tenant"][i];
        f.put(name, Val::U(i as u64));
    }
    f
}

#[test]
fn every_well_known_name_passes_the_shape_table_and_others_mostly_do_not() {
    for name in WELL_KNOWN {
        assert!(name.is_ascii() && !name.is_empty(), "{name}");
        assert_eq!(slot_of(name), lookup(name), "{name}");
        assert!(slot_of(name).is_some(), "{name}");
    }
    for name in [
        "route",
        "attempt",
        "score",
        "documents",
        "",
        "é",
        "modelx",
        "Model",
    ] {
        assert_eq!(slot_of(name), None, "{name}");
    }
    // Same first byte and length as a well-known name, yet not one: the lookup decides.
    assert_eq!(slot_of("modem"), None);
    assert_eq!(slot_of("model"), Some((Slot::Model, 0)));
}

#[test]
fn the_lowest_ranked_alias_wins_whatever_the_order_and_extras_keep_theirs() {
    // Within the inline capacity, and spilled beyond it.
    for extra in [0, 1, 5] {
        let mut f = sample(extra);
        assert_eq!(f.len(), 2 + extra, "{extra}");
        assert_eq!(f.entries.spilled(), 2 + extra > INLINE_FIELDS, "{extra}");
        assert_eq!(f.text(Slot::Model).as_deref(), Some("gpt-4o-mini"));
        // A lower-priority alias recorded later does not win; the spec's name does.
        f.put("llm.model_name", Val::S("late alias".into()));
        assert_eq!(f.text(Slot::Model).as_deref(), Some("gpt-4o-mini"));
        let names: Vec<_> = f.extras().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["route", "attempt", "score", "region", "tenant"][..extra],
            "{extra}"
        );
        // A metadata key recorded again keeps its place and takes the new value.
        if extra > 0 {
            f.put("route", Val::S("again".into()));
            assert_eq!(f.extras().next(), Some(("route", &Val::S("again".into()))));
            assert_eq!(f.len(), 2 + extra);
        }
    }
}

#[test]
fn merging_and_taking_keep_the_order_of_metadata_keys() {
    let mut f = sample(3);
    let mut later = Fields::default();
    later.put("prompt_tokens", Val::I(99));
    later.put("llm.model_name", Val::S("ignored alias".into()));
    later.put("attempt", Val::U(7));
    later.put("tenant", Val::U(8));
    f.merge(later);
    assert_eq!(f.i64(Slot::PromptTokens), Some(99));
    assert_eq!(f.text(Slot::Model).as_deref(), Some("gpt-4o-mini"));
    assert_eq!(f.take(Slot::Model), Some(Val::S("gpt-4o-mini".into())));
    assert!(!f.has(Slot::Model));
    let extras: Vec<_> = f.extras().map(|(n, v)| (n, v.clone())).collect();
    assert_eq!(
        extras,
        [
            ("route", Val::U(0)),
            ("attempt", Val::U(7)),
            ("score", Val::U(2)),
            ("tenant", Val::U(8)),
        ]
    );
    // Slots stay in front of the metadata keys, whatever the order of recording.
    let mut mixed = Fields::default();
    mixed.put("route", Val::U(1));
    mixed.put("model", Val::S("m".into()));
    mixed.put("attempt", Val::U(2));
    mixed.put("top_score", Val::F(0.5));
    assert!(!mixed.names_ids(), "no id recorded");
    mixed.put("session.id", Val::S("s-1".into()));
    assert!(mixed.names_ids());
    assert_eq!(mixed.text(Slot::SessionId).as_deref(), Some("s-1"));
    assert_eq!(mixed.take(Slot::SessionId), Some(Val::S("s-1".into())));
    assert!(matches!(mixed.entries[0].0, Key::Known(..)));
    assert!(matches!(mixed.entries[1].0, Key::Known(..)));
    assert_eq!(mixed.f64(Slot::TopScore), Some(0.5));
    let names: Vec<_> = mixed.extras().map(|(n, _)| n).collect();
    assert_eq!(names, ["route", "attempt"]);
    let json = f.take_extra_json(&TextLimits::default());
    assert_eq!(json.len(), 4);
    assert_eq!(f.extras().count(), 0);
    assert_eq!(f.i64(Slot::PromptTokens), Some(99), "slots stay");
}

#[test]
fn queued_bytes_count_spilled_entries_and_long_text_only() {
    assert_eq!(sample(1).approx_bytes(), 0, "short text and inline entries");
    let mut long = Fields::default();
    long.put("query_text", Val::S("q".repeat(100).into()));
    assert!(long.approx_bytes() >= 100);
    assert!(sample(5).approx_bytes() >= 7 * std::mem::size_of::<(Key, Val)>());
}

/// The README's mapping table (which is also the crate's documentation) names every field
/// name the layer understands: it is the one list users read, so an alias added to
/// `well_known_names!` without a line there fails here.
#[test]
fn the_readme_mapping_table_names_every_well_known_field() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## How spans, fields and events become rows")
        .expect("the README has its mapping section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let missing: Vec<&str> = WELL_KNOWN
        .iter()
        .copied()
        .filter(|name| !section.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's mapping table: {missing:?}"
    );
}
