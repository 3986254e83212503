//! InfluxDB line protocol: `measurement[,tag=v…] field=v[,field=v…] [timestamp]`.
//!
//! Each field becomes metric `measurement.field`. Floats and integers (`12i`,
//! `12u`) are numbers; strings and booleans are counted as `wrong_type`. The
//! device comes from the route's device tag when present, else from the topic.
//! A line that does not parse rejects the whole message (`malformed`): line
//! protocol is machine-written, so a broken line means a broken writer.
//! Backslash escapes in names are honoured; one device per message.

use wire::{Counters, Reason};

use super::{fields::Context, time, Decoded, Reading};

pub(super) fn decode(
    ctx: &Context<'_>,
    topic_device: &str,
    payload: &[u8],
) -> Result<Decoded, Reason> {
    let text = std::str::from_utf8(payload).map_err(|_| Reason::Malformed)?;
    let mut device: Option<String> = None;
    let mut readings = Vec::new();
    let mut problems = Counters::default();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let parsed = parse_line(line).ok_or(Reason::Malformed)?;
        if device.is_none() {
            let tagged = parsed.tags.iter().find(|(k, _)| *k == ctx.rules.device_tag);
            device = Some(tagged.map_or(topic_device.to_owned(), |(_, v)| v.clone()));
        }
        let ts_ms = match parsed.timestamp {
            Some(raw) => time::check(
                ctx.rules.time_unit.to_ms(raw as f64)?,
                ctx.now_ms,
                ctx.limits.max_future_ms,
            )?,
            None => ctx.now_ms,
        };
        for (field, value) in parsed.fields {
            let metric = compact_str::format_compact!("{}.{}", parsed.measurement, field);
            if metric.len() > ctx.limits.max_name_bytes {
                problems.add(Reason::TooLarge, 1);
                continue;
            }
            match value {
                Value::Number(v) if v.is_finite() => readings.push(Reading {
                    metric,
                    ts_ms,
                    value: v,
                }),
                Value::Number(_) => problems.add(Reason::NonFinite, 1),
                Value::Other => problems.add(Reason::WrongType, 1),
            }
        }
    }
    let device = device.unwrap_or_else(|| topic_device.to_owned());
    if device.is_empty() {
        // A device tag with no value (`device=`): a broken writer, not a big one.
        return Err(Reason::Malformed);
    }
    if device.len() > ctx.limits.max_name_bytes {
        return Err(Reason::TooLarge);
    }
    Ok(Decoded {
        device,
        seq: None,
        readings,
        problems,
    })
}

#[derive(Debug, PartialEq)]
enum Value {
    Number(f64),
    Other,
}

#[derive(Debug)]
struct Line {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

/// Splits `s` on `sep` outside double quotes, honouring backslash escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped, mut quoted) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn key_value(s: &str) -> Option<(String, &str)> {
    let parts = split_unescaped(s, '=');
    let [k, _] = parts.as_slice() else {
        // Values may contain '=' only inside quotes, which split_unescaped keeps.
        return None;
    };
    let eq = k.len();
    (!k.is_empty()).then(|| (unescape(k), &s[eq + 1..]))
}

fn parse_value(raw: &str) -> Option<Value> {
    if raw.starts_with('"') {
        return (raw.len() >= 2 && raw.ends_with('"')).then_some(Value::Other);
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE" => {
            return Some(Value::Other)
        }
        _ => {}
    }
    if let Some(int) = raw.strip_suffix('i') {
        return int.parse::<i64>().ok().map(|v| Value::Number(v as f64));
    }
    if let Some(uint) = raw.strip_suffix('u') {
        return uint.parse::<u64>().ok().map(|v| Value::Number(v as f64));
    }
    raw.parse::<f64>().ok().map(Value::Number)
}

fn parse_line(line: &str) -> Option<Line> {
    let sections = split_unescaped(line, ' ');
    let sections: Vec<&str> = sections.into_iter().filter(|s| !s.is_empty()).collect();
    let (head, fields, ts) = match sections.as_slice() {
        [h, f] => (*h, *f, None),
        [h, f, t] => (*h, *f, Some(t.parse::<i64>().ok()?)),
        _ => return None,
    };
    let mut head = split_unescaped(head, ',').into_iter();
    let measurement = unescape(head.next().filter(|m| !m.is_empty())?);
    let tags = head
        .map(|t| key_value(t).map(|(k, v)| (k, unescape(v))))
        .collect::<Option<Vec<_>>>()?;
    let fields = split_unescaped(fields, ',')
        .into_iter()
        .map(|f| {
            let (k, v) = key_value(f)?;
            Some((k, parse_value(v)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Line {
        measurement,
        tags,
        fields,
        timestamp: ts,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode as decode_any, Format};
    use super::*;

    #[test]
    fn lines_become_measurement_field_metrics() {
        let ns = NOW * 1_000_000;
        let p = format!(
            "pump,device=p7,site=a temp=21.5,rpm=1200i,state=\"ok\" {ns}\npump flow=3u {ns}\n"
        );
        let d = decode_any(
            &rules(Format::Influx),
            &limits(),
            "plant/x/influx",
            p.as_bytes(),
            NOW,
        )
        .unwrap();
        assert_eq!(d.device, "p7");
        let got: Vec<(&str, f64)> = d
            .readings
            .iter()
            .map(|r| (r.metric.as_str(), r.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("pump.temp", 21.5),
                ("pump.rpm", 1200.0),
                ("pump.flow", 3.0)
            ]
        );
        assert!(d.readings.iter().all(|r| r.ts_ms == NOW));
        assert_eq!(d.problems.get(Reason::WrongType), 1);
    }

    #[test]
    fn escapes_and_quoted_spaces_parse() {
        let line = parse_line(r#"my\ meas,tag\,x=a\ b f="a b,c=d",g=1 5"#).unwrap();
        assert_eq!(line.measurement, "my meas");
        assert_eq!(line.tags, vec![("tag,x".to_owned(), "a b".to_owned())]);
        assert_eq!(line.fields[1], ("g".to_owned(), Value::Number(1.0)));
        assert_eq!(line.timestamp, Some(5));
    }

    #[test]
    fn broken_lines_reject_the_message() {
        for bad in [
            "pump",
            "pump temp",
            "pump temp=abc",
            ",a=b x=1",
            "pump x=1 notatime",
            "p x=1 2 3",
        ] {
            assert_eq!(
                decode_any(
                    &rules(Format::Influx),
                    &limits(),
                    "p/d/i",
                    bad.as_bytes(),
                    NOW
                ),
                Err(Reason::Malformed),
                "{bad}"
            );
        }
        let nan = decode_any(&rules(Format::Influx), &limits(), "p/d/i", b"m x=NaN", NOW).unwrap();
        assert_eq!(nan.problems.get(Reason::NonFinite), 1);
    }

    #[test]
    fn an_empty_device_tag_is_malformed_and_a_long_one_too_large() {
        let decode = |payload: &str| {
            decode_any(
                &rules(Format::Influx),
                &limits(),
                "p/d/i",
                payload.as_bytes(),
                NOW,
            )
        };
        assert_eq!(decode("m,device= x=1"), Err(Reason::Malformed));
        assert_eq!(
            decode("m,site=a,device= x=1\nm x=2"),
            Err(Reason::Malformed)
        );
        let long = "d".repeat(limits().max_name_bytes + 1);
        assert_eq!(
            decode(&format!("m,device={long} x=1")),
            Err(Reason::TooLarge)
        );
        assert_eq!(decode("m,device=p1 x=1").unwrap().device, "p1");
        assert_eq!(
            decode("m x=1").unwrap().device,
            "d",
            "no tag: the topic's device"
        );
    }
}
