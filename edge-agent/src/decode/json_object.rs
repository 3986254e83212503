//! Reads a JSON object's top-level fields straight off the payload: names borrowed
//! from it (copied only when they hold escapes), values reduced to a number or
//! "something else". It builds no `serde_json::Value` tree and allocates no key,
//! which at 10k msg/s was a dozen allocations per message for nothing.
//!
//! What it accepts and rejects is `serde_json`'s own (the same parser runs):
//! a payload that is not one object, trailing bytes, a number out of `f64`'s
//! range or nesting deeper than serde_json's limit fail the whole payload.
//! It does not interpret nested values (they are skipped as `Other`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A field value reduced to what the decoder cares about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Field {
    Number(f64),
    Other,
}

/// The fields of one JSON object as a JSON map holds them: ordered by name,
/// a repeated name's last value.
pub(super) fn read_object(payload: &[u8]) -> Result<Vec<(Cow<'_, str>, Field)>, serde_json::Error> {
    let Fields(mut fields) = serde_json::from_slice(payload)?;
    // Reversed, then a stable sort: the first of equal names is the payload's last.
    fields.reverse();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.dedup_by(|later, first| later.0 == first.0);
    Ok(fields)
}

struct Fields<'de>(Vec<(Cow<'de, str>, Field)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Name(name)) = map.next_key()? {
            let value: Field = map.next_value()?;
            fields.push((name, value));
        }
        Ok(Fields(fields))
    }
}

/// A field name: borrowed from the payload unless it had to be unescaped.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    // Numbers, as `serde_json::Value::as_f64` reads them.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field, E> {
        Ok(Field::Number(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Ok(Field::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Ok(Field::Number(v as f64))
    }
    // Everything else is one "other" value, nested ones read to their end.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field, E> {
        Ok(Field::Other)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Field, E> {
        Ok(Field::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the decoder read before: a `serde_json::Value` map, `as_f64` per value.
    fn via_value(payload: &[u8]) -> Option<Vec<(String, Field)>> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload).ok()?;
        Some(
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_f64().map_or(Field::Other, Field::Number)))
                .collect(),
        )
    }

    fn read(payload: &[u8]) -> Option<Vec<(String, Field)>> {
        let fields = read_object(payload).ok()?;
        Some(
            fields
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect(),
        )
    }

    #[test]
    fn reads_what_the_value_tree_read() {
        let cases: &[&[u8]] = &[
            br#"{"seq":7,"ts":1767225600000,"Current":1.25,"Voltage":230}"#,
            br#"{"a":"x","b":null,"c":[1,{"d":[2]}],"d":2.5,"e":true,"f":{"g":1}}"#,
            br#"{"big":18446744073709551615,"neg":-9223372036854775808,"e":1e300}"#,
            br#"{"dup":1,"dup":2,"a\u00e9\"b":3}"#,
            br#"{}"#,
            br#" { "x" : -0.0 } "#,
            br#"[1,2]"#,
            br#"{"x":1e999}"#,
            br#"{"x":1}trailing"#,
            br#"{"x":"unterminated}"#,
            br#"{"x":1,}"#,
            b"{\"x\":\"\xff\"}",
            br#"42"#,
            b"",
        ];
        for payload in cases {
            assert_eq!(
                read(payload),
                via_value(payload),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(|v| format!("{v:e}")),
            any::<i64>().prop_map(|v| v.to_string()),
            any::<u64>().prop_map(|v| v.to_string()),
            "[a-z ]{0,8}".prop_map(|v| format!("{v:?}")),
            Just("null".to_owned()),
            Just("[1,[2],{\"a\":3}]".to_owned()),
            Just("{\"n\":{\"m\":1}}".to_owned()),
        ]
    }

    /// Names as they appear between the quotes: a few, so repeats are common,
    /// and escaped ones (`\u0041` is "A", the same name as a plain `A`).
    fn key_text() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("A"),
            Just("ts"),
            Just("\\u0041"),
            Just("q\\\"uote"),
            Just("tab\\t"),
        ]
    }

    proptest! {
        #[test]
        fn random_objects_read_as_the_value_tree_read(
            fields in proptest::collection::vec((key_text(), value_text()), 0..12)
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let payload = format!("{{{}}}", body.join(","));
            prop_assert_eq!(read(payload.as_bytes()), via_value(payload.as_bytes()), "{}", payload);
        }
    }

    #[test]
    fn names_without_escapes_are_borrowed() {
        let fields = read_object(br#"{"plain":1,"esc\"aped":2}"#).unwrap();
        assert!(matches!(&fields[0].0, Cow::Owned(s) if s == "esc\"aped"));
        assert!(matches!(fields[1].0, Cow::Borrowed("plain")));
    }
}
