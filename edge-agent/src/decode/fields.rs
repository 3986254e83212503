//! JSON objects and CBOR maps: every numeric field is a metric.
//!
//! The route's time field gives the event time (gateway clock when absent), its
//! sequence field the device's message number. Other fields must be finite
//! numbers; a field that is not is counted (`wrong_type`, `non_finite`,
//! `too_large` for an over-long name) and skipped while its siblings flow.
//! Nested objects are not flattened.

use std::collections::BTreeMap;

use serde::Deserialize;
use wire::{Counters, Reason};

use super::json_object::{self, Field};
use super::{time, DecodeLimits, DecodeRules, Decoded, Reading};

/// What a decoder needs besides the payload.
#[derive(Debug)]
pub(super) struct Context<'a> {
    pub rules: &'a DecodeRules,
    pub limits: &'a DecodeLimits,
    pub now_ms: i64,
}

/// CBOR values as the map decoder sees them (anything not a number is `Other`).
#[derive(Deserialize)]
#[serde(untagged)]
enum CborField {
    Number(f64),
    Other(serde::de::IgnoredAny),
}

pub(super) fn decode_json(
    ctx: &Context<'_>,
    device: &str,
    payload: &[u8],
) -> Result<Decoded, Reason> {
    let fields = json_object::read_object(payload).map_err(|_| Reason::Malformed)?;
    collect(ctx, device, fields.iter().map(|(k, v)| (k.as_ref(), *v)))
}

pub(super) fn decode_cbor(
    ctx: &Context<'_>,
    device: &str,
    payload: &[u8],
) -> Result<Decoded, Reason> {
    let map: BTreeMap<String, CborField> =
        wire::decode_capped(payload, ctx.limits.max_payload_bytes)
            .map_err(|_| Reason::Malformed)?;
    let fields = map.iter().map(|(k, v)| {
        let field = match v {
            CborField::Number(n) => Field::Number(*n),
            CborField::Other(_) => Field::Other,
        };
        (k.as_str(), field)
    });
    collect(ctx, device, fields)
}

fn collect<'f>(
    ctx: &Context<'_>,
    device: &str,
    fields: impl Iterator<Item = (&'f str, Field)>,
) -> Result<Decoded, Reason> {
    let rules = ctx.rules;
    let mut ts_ms = None;
    let mut seq = None;
    let mut values = Vec::new();
    let mut problems = Counters::default();
    for (name, field) in fields {
        if name == rules.time_field {
            let Field::Number(raw) = field else {
                return Err(Reason::BadTimestamp);
            };
            ts_ms = Some(rules.time_unit.to_ms(raw)?);
        } else if rules.seq_field.as_deref() == Some(name) {
            match field {
                Field::Number(n) if n >= 0.0 && n.fract() == 0.0 && n < 2f64.powi(53) => {
                    seq = Some(n as u64);
                }
                _ => return Err(Reason::WrongType),
            }
        } else if name.len() > ctx.limits.max_name_bytes {
            problems.add(Reason::TooLarge, 1);
        } else {
            match field {
                Field::Number(v) if v.is_finite() => values.push((name, v)),
                Field::Number(_) => problems.add(Reason::NonFinite, 1),
                Field::Other => problems.add(Reason::WrongType, 1),
            }
        }
    }
    let ts_ms = match ts_ms {
        Some(ts) => time::check(ts, ctx.now_ms, ctx.limits.max_future_ms)?,
        None => ctx.now_ms,
    };
    Ok(Decoded {
        device: device.to_owned(),
        seq,
        readings: values
            .into_iter()
            .map(|(metric, value)| Reading {
                metric: metric.into(),
                ts_ms,
                value,
            })
            .collect(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, Format};
    use super::*;

    #[test]
    fn json_object_becomes_readings_with_payload_time_and_seq() {
        let p = format!(r#"{{"seq":7,"ts":{NOW},"Current":1.25,"Voltage":230}}"#);
        let d = decode(
            &rules(Format::Json),
            &limits(),
            "plant/pump-1/sensors",
            p.as_bytes(),
            NOW + 5,
        )
        .unwrap();
        assert_eq!((d.device.as_str(), d.seq), ("pump-1", Some(7)));
        let got: Vec<(&str, i64, f64)> = d
            .readings
            .iter()
            .map(|r| (r.metric.as_str(), r.ts_ms, r.value))
            .collect();
        assert_eq!(got, vec![("Current", NOW, 1.25), ("Voltage", NOW, 230.0)]);
    }

    #[test]
    fn bad_fields_are_counted_and_good_ones_flow() {
        let p = br#"{"a":"x","b":null,"c":[1],"d":2.5}"#;
        let d = decode(&rules(Format::Json), &limits(), "p/d/s", p, NOW).unwrap();
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].ts_ms, NOW, "no time field: gateway clock");
        assert_eq!(d.problems.get(Reason::WrongType), 3);
    }

    #[test]
    fn malformed_json_and_bad_times_reject_the_message() {
        let r = rules(Format::Json);
        for (payload, reason) in [
            (&br#"{"seq":"#[..], Reason::Malformed),
            (b"[1,2]", Reason::Malformed),
            (br#"{"x":1e999}"#, Reason::Malformed),
            (br#"{"ts":5,"x":1}"#, Reason::BadTimestamp),
            (br#"{"ts":"yesterday","x":1}"#, Reason::BadTimestamp),
            (br#"{"seq":-1,"x":1}"#, Reason::WrongType),
        ] {
            assert_eq!(
                decode(&r, &limits(), "p/d/s", payload, NOW),
                Err(reason),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn cbor_map_decodes_like_json_and_nan_is_counted() {
        let mut m = BTreeMap::new();
        m.insert("ts".to_owned(), NOW as f64);
        m.insert("p".to_owned(), 2.0);
        m.insert("q".to_owned(), f64::NAN);
        let bytes = wire::encode(&m);
        let d = decode(&rules(Format::Cbor), &limits(), "p/d/s", &bytes, NOW).unwrap();
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.problems.get(Reason::NonFinite), 1);
        let garbage = [0xff, 0x00, 0x13];
        assert_eq!(
            decode(&rules(Format::Cbor), &limits(), "p/d/s", &garbage, NOW),
            Err(Reason::Malformed)
        );
    }
}
