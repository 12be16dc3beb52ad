//! Unit tests of the metadata's construction.

use serde_json::Value;
use uuid::Uuid;

use super::*;

/// The two emitters of a span's metadata, the JSON text the writer encodes and the `Value` of a
/// trace's row (or of a row the privacy settings see), agree on awkward input.
#[test]
fn metadata_written_as_text_equals_metadata_built_as_a_value() {
    let limits = TextLimits {
        label: 8,
        content: 12,
        ..TextLimits::default()
    };
    let mut fields = Fields::default();
    fields.put("route", Val::S("/chat".into()));
    fields.put("long", Val::S("x".repeat(100).into()));
    fields.put("nul", Val::S("a\0b\"quote\\".into()));
    fields.put("ctl", Val::S("tab\tnl\n\u{1f}\u{7f}".into()));
    fields.put("utf8", Val::S("café ✓ 😀".into()));
    fields.put("count", Val::I(-3));
    fields.put("big", Val::U(u64::MAX));
    fields.put("ratio", Val::F(0.25));
    fields.put("nan", Val::F(f64::NAN));
    fields.put("minus_inf", Val::F(f64::NEG_INFINITY));
    fields.put("third", Val::F(1.0 / 3.0));
    fields.put("whole", Val::F(2.0));
    fields.put("small", Val::I(i64::MIN));
    fields.put("flag", Val::B(true));
    fields.put("a_rather_long_field_name", Val::I(1));
    // Cut to the same 8 characters as the key above: the later value wins.
    fields.put("a_rather_other_name", Val::I(2));
    // The same key as the attached events: the events win.
    fields.put("events", Val::S("a field named events".into()));
    fields.put("user_id", Val::S("not-a-uuid-but-long".into()));
    fields.put("kb_id", Val::S(Uuid::nil().to_string().into()));
    let events = vec![serde_json::json!({"message": "slow", "level": "WARN"})];

    let metadata = Metadata {
        limits: &limits,
        callsite: "callsite",
        otel_transport_fields: false,
        fields: &fields,
        events: &events,
        events_dropped: 2,
    };
    let mut text = Vec::new();
    metadata.write_json(&mut text);
    let written: Value = serde_json::from_slice(&text).expect("valid JSON");
    assert_eq!(written, Value::Object(metadata.to_map()));
    assert!(
        written.get("kb_id").is_none(),
        "a UUID kb id has its column"
    );
    assert_eq!(written["events_dropped"], 2);
    assert_eq!(written["a_rather"], 2);
    assert_eq!(
        written["events"],
        serde_json::json!([{"message": "slow", "level": "WARN"}])
    );

    // Each key once, in the order `jsonb` stores them: shortest first, then bytewise.
    let keys = keys_in_order(&text);
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    sorted.dedup();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), written.as_object().map_or(0, |m| m.len()));
}

/// The keys of a JSON object as written, in their order and with repeats.
fn keys_in_order(text: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    mut m: M,
                ) -> Result<Keys, M::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_slice::<Keys>(text)
        .expect("a JSON object")
        .0
}
