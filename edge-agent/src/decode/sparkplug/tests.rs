//! Unit tests of the Sparkplug decoder with payloads built by our own `proto.rs` (the
//! independently encoded vectors are in `tests/sparkplug_vectors.rs`).

use prost::Message;

use super::proto::{Metric, Payload, Value};
use super::values::code;
use super::*;
use crate::decode::test_support::{limits, NOW};

fn metric(name: Option<&str>, alias: Option<u64>, datatype: u32, value: Value) -> Metric {
    Metric {
        name: name.map(str::to_owned),
        alias,
        datatype: (datatype != 0).then_some(datatype),
        value: Some(value),
        ..Metric::default()
    }
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(NOW as u64),
        seq,
        metrics,
        ..Payload::default()
    }
    .encode_to_vec()
}

fn values(d: &Decoded) -> Vec<(&str, f64)> {
    d.readings
        .iter()
        .map(|r| (r.metric.as_str(), r.value))
        .collect()
}

#[test]
fn topics_name_nodes_and_devices_or_are_refused() {
    let t = parse_topic("spBv1.0/plant/DDATA/gw1/pump").unwrap();
    assert_eq!((t.group, t.node, t.device), ("plant", "gw1", Some("pump")));
    assert_eq!(t.kind, Kind::DData);
    for (topic, reason) in [
        ("spBv1.0/STATE/host-1", Reason::SparkplugIgnored),
        ("spBv1.0/plant/NCMD/gw1", Reason::SparkplugIgnored),
        ("spBv1.0/plant/DCMD/gw1/pump", Reason::SparkplugIgnored),
        ("spBv1.0/plant/NDATA/gw1/pump", Reason::UnknownTopic),
        ("spBv1.0/plant/DDATA/gw1", Reason::UnknownTopic),
        ("spBv1.0/plant/NDATA", Reason::UnknownTopic),
        ("spBv1.0//NDATA/gw1", Reason::UnknownTopic),
        ("spAv1.0/plant/NDATA/gw1", Reason::UnknownTopic),
        ("spBv1.0/plant/NOISE/gw1", Reason::UnknownTopic),
    ] {
        assert_eq!(parse_topic(topic).map(|_| ()), Err(reason), "{topic}");
    }
}

#[test]
fn birth_then_data_by_alias_resolves_names_and_datatypes() {
    let mut s = Sparkplug::default();
    let l = limits();
    let birth = payload(
        Some(0),
        vec![
            metric(Some("bdSeq"), None, code::INT64, Value::LongValue(1)),
            metric(
                Some("Node Control/Rebirth"),
                None,
                code::BOOLEAN,
                Value::BooleanValue(false),
            ),
            metric(Some("Temp"), Some(1), code::INT16, Value::IntValue(0xFFF6)),
            metric(
                Some("On"),
                Some(2),
                code::BOOLEAN,
                Value::BooleanValue(true),
            ),
        ],
    );
    let d = s.decode(&l, "spBv1.0/g/NBIRTH/n", &birth, NOW).unwrap();
    assert_eq!(d.device, "g/n");
    assert_eq!(values(&d), vec![("Temp", -10.0), ("On", 1.0)]);
    let data = payload(
        Some(1),
        vec![
            metric(None, Some(1), 0, Value::IntValue(0xFFFF_FFFE)),
            metric(None, Some(9), 0, Value::IntValue(3)),
            metric(
                Some("Label"),
                None,
                code::STRING,
                Value::StringValue("x".into()),
            ),
        ],
    );
    let d = s.decode(&l, "spBv1.0/g/NDATA/n", &data, NOW).unwrap();
    assert_eq!(values(&d), vec![("Temp", -2.0)]);
    assert_eq!(d.problems.get(Reason::SparkplugUnknownAlias), 1);
    assert_eq!(d.problems.get(Reason::WrongType), 1);
    // The stateless entry point sees each payload alone.
    let rules = crate::decode::test_support::rules(crate::decode::Format::Sparkplug);
    assert_eq!(
        crate::decode::decode(&rules, &l, "spBv1.0/g/NDATA/n", &data, NOW),
        Err(Reason::SparkplugBeforeBirth)
    );
}

#[test]
fn long_names_control_characters_and_garbage_are_counted() {
    let mut s = Sparkplug::default();
    let l = limits();
    let long = "x".repeat(l.max_name_bytes + 1);
    let birth = payload(
        Some(0),
        vec![
            metric(Some(&long), None, code::DOUBLE, Value::DoubleValue(1.0)),
            metric(Some("a\0b"), None, code::DOUBLE, Value::DoubleValue(1.0)),
            metric(Some("ok"), None, code::DOUBLE, Value::DoubleValue(1.0)),
        ],
    );
    let d = s.decode(&l, "spBv1.0/g/NBIRTH/n", &birth, NOW).unwrap();
    assert_eq!(values(&d), vec![("ok", 1.0)]);
    assert_eq!(d.problems.get(Reason::TooLarge), 1);
    assert_eq!(d.problems.get(Reason::Malformed), 1);
    assert_eq!(
        s.decode(&l, "spBv1.0/g/NDATA/n", &[0xff, 0xff, 0xff], NOW),
        Err(Reason::Malformed)
    );
    let big = vec![0u8; l.max_payload_bytes + 1];
    assert_eq!(
        s.decode(&l, "spBv1.0/g/NDATA/n", &big, NOW),
        Err(Reason::TooLarge)
    );
    let far = format!("spBv1.0/{long}/NDATA/n");
    assert_eq!(s.decode(&l, &far, &birth, NOW), Err(Reason::TooLarge));
    let bad_seq = payload(Some(256), vec![]);
    assert_eq!(
        s.decode(&l, "spBv1.0/g/NDATA/n", &bad_seq, NOW),
        Err(Reason::Malformed)
    );
}

#[test]
fn unreadable_data_makes_a_rebirth_request_due_for_its_node() {
    let mut s = Sparkplug::default();
    let l = limits();
    let temp = || vec![metric(None, Some(1), 0, Value::DoubleValue(1.0))];
    let wanted = |s: &mut Sparkplug, topic: &str, p: &[u8], now: i64| {
        let _ = s.decode(&l, topic, p, now);
        s.rebirth_request(now).map(|c| c.topic)
    };
    let ncmd = Some("spBv1.0/g/NCMD/n".to_owned());
    // After an agent restart: NDATA of a node the session never saw.
    assert_eq!(
        wanted(&mut s, "spBv1.0/g/NDATA/n", &payload(Some(5), temp()), NOW),
        ncmd
    );
    // Asked once per retry interval, however much unreadable data follows.
    assert_eq!(
        wanted(
            &mut s,
            "spBv1.0/g/DDATA/n/d",
            &payload(Some(6), temp()),
            NOW + 1
        ),
        None
    );
    // Deaths, commands and malformed payloads ask for nothing.
    let later = NOW + rebirth::REBIRTH_RETRY_MS;
    for topic in [
        "spBv1.0/g/NDEATH/n",
        "spBv1.0/g/DDEATH/n/d",
        "spBv1.0/g/NCMD/n",
    ] {
        assert_eq!(
            wanted(&mut s, topic, &payload(None, vec![]), later),
            None,
            "{topic}"
        );
    }
    assert_eq!(wanted(&mut s, "spBv1.0/g/NDATA/n", &[0xff], later), None);
    // The node answers with a birth: its data reads, nothing is asked.
    let birth = payload(
        Some(0),
        vec![metric(
            Some("Temp"),
            Some(1),
            code::DOUBLE,
            Value::DoubleValue(0.5),
        )],
    );
    assert_eq!(wanted(&mut s, "spBv1.0/g/NBIRTH/n", &birth, later), None);
    assert_eq!(
        wanted(
            &mut s,
            "spBv1.0/g/NDATA/n",
            &payload(Some(1), temp()),
            later
        ),
        None
    );
    // A device without its DBIRTH, and an alias the birth did not define, ask again.
    assert_eq!(
        wanted(
            &mut s,
            "spBv1.0/g/DDATA/n/d",
            &payload(Some(2), temp()),
            later
        ),
        ncmd
    );
    let unknown = vec![metric(None, Some(9), 0, Value::DoubleValue(1.0))];
    let much_later = later + rebirth::REBIRTH_RETRY_MS;
    assert_eq!(
        wanted(
            &mut s,
            "spBv1.0/g/NDATA/n",
            &payload(Some(3), unknown),
            much_later
        ),
        ncmd
    );
}
