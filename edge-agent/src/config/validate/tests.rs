//! Unit tests of config validation: defaults, every problem reported with its key, each section's bounds.

use super::*;
use crate::decode::TimeUnit;

const MINIMAL: &str = r#"
        gateway_id = "gw-1"
        data_dir = "/tmp/x"
        [mqtt]
        client_id = "a"
        subscribe = ["plant/#"]
        [[routes]]
        topic = "plant/+/sensors"
        format = "json"
        [uplink]
        url = "http://127.0.0.1:8080"
        token_env = "EDGE_TOKEN"
    "#;

#[test]
fn minimal_config_gets_sane_defaults() {
    let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(s.window.width_ms, 60_000);
    assert_eq!(s.routes[0].rules.time_unit, TimeUnit::Milliseconds);
    assert_eq!(s.mqtt.port, 1883);
}

#[test]
fn journal_commit_linger_defaults_and_is_bounded() {
    let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(s.journal.commit_linger, Duration::from_millis(20));
    let with = |v: &str| format!("{MINIMAL}\n[journal]\ncommit_linger = \"{v}\"\n");
    let s = AgentConfig::parse(&with("0ms"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(s.journal.commit_linger, Duration::ZERO);
    let problems = AgentConfig::parse(&with("2s"))
        .unwrap()
        .validate()
        .unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["journal.commit_linger"]);
    assert!(AgentConfig::parse(&with("soon")).is_err());
}

#[test]
fn journal_cache_bytes_defaults_and_is_bounded() {
    let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(s.journal.cache_bytes, crate::store::DEFAULT_CACHE_BYTES);
    let with = |v: &str| format!("{MINIMAL}\n[journal]\ncache_bytes = {v}\n");
    let s = AgentConfig::parse(&with("8388608"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(s.journal.cache_bytes, 8 << 20);
    for absurd in ["16", "1048575", "68719476737"] {
        let problems = AgentConfig::parse(&with(absurd))
            .unwrap()
            .validate()
            .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["journal.cache_bytes"], "{absurd}");
        assert!(problems[0].message.contains("1 MiB"), "{problems:?}");
    }
    assert!(AgentConfig::parse(&with("-1")).is_err());
}

#[test]
fn uplink_rounding_defaults_and_is_bounded() {
    let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(
        s.uplink.body_encoding(),
        wire::BodyEncoding::Columnar {
            relative_error: 1e-4
        }
    );
    // MINIMAL ends inside [uplink].
    let with = |v: &str| format!("{MINIMAL}\nrelative_error = {v}\n");
    for fine in ["0", "0.0", "0.001", "0.01", "1e-9"] {
        let s = AgentConfig::parse(&with(fine)).unwrap().validate();
        assert!(s.is_ok(), "{fine}: {:?}", s.err());
    }
    for bad in ["0.05", "-0.001", "1e-12", "1"] {
        let problems = AgentConfig::parse(&with(bad))
            .unwrap()
            .validate()
            .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["uplink.relative_error"], "{bad}");
        assert!(problems[0].message.contains("0 to send"), "{problems:?}");
    }
    assert!(AgentConfig::parse(&with("\"fine\"")).is_err());
}

#[test]
fn sparkplug_routes_need_the_sparkplug_namespace() {
    let route = |topic: &str| {
        MINIMAL
            .replace("plant/+/sensors", topic)
            .replace("\"json\"", "\"sparkplug\"")
    };
    let s = AgentConfig::parse(&route("spBv1.0/#"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(s.routes[0].rules.format, Format::Sparkplug);
    assert!(s.routes[0].request_rebirth, "on by default");
    let quiet = route("spBv1.0/#").replace(
        "format = \"sparkplug\"",
        "format = \"sparkplug\"\nrequest_rebirth = false",
    );
    let s = AgentConfig::parse(&quiet).unwrap().validate().unwrap();
    assert!(!s.routes[0].request_rebirth);
    let json = MINIMAL.replace(
        "format = \"json\"",
        "format = \"json\"\nrequest_rebirth = true",
    );
    let problems = AgentConfig::parse(&json).unwrap().validate().unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["routes[0].request_rebirth"]);
    assert!(
        !AgentConfig::parse(MINIMAL)
            .unwrap()
            .validate()
            .unwrap()
            .routes[0]
            .request_rebirth
    );
    AgentConfig::parse(&route("spBv1.0/plant-a/+/+/+"))
        .unwrap()
        .validate()
        .unwrap();
    let problems = AgentConfig::parse(&route("plant/#"))
        .unwrap()
        .validate()
        .unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["routes[0].topic"]);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let bad = MINIMAL
        .replace("gw-1", "gw 1!")
        .replace("plant/+/sensors", "plant/#/x")
        .replace("http://", "ftp://")
        .replace("[uplink]", "[window]\nsketch_alpha = 2.0\n[uplink]");
    let problems = AgentConfig::parse(&bad).unwrap().validate().unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "gateway_id",
            "routes[0].topic",
            "window.sketch_alpha",
            "uplink.url"
        ]
    );
}

#[test]
fn a_bad_template_mask_is_reported_only_when_mining_is_on() {
    let with = |enabled: bool| {
        format!("{MINIMAL}\n[templates]\nenabled = {enabled}\nextra_masks = [\"(\"]\n")
    };
    let problems = AgentConfig::parse(&with(true))
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "templates");
    assert!(
        problems[0].message.contains("not a valid regex"),
        "{}",
        problems[0].message
    );
    assert!(AgentConfig::parse(&with(false)).unwrap().validate().is_ok());
}

#[test]
fn exemplar_settings_are_checked_with_their_keys() {
    let cfg = format!("{MINIMAL}\n[templates]\nenabled = true\nexemplars = 11\nredact = [\"(\"]\n");
    let problems = AgentConfig::parse(&cfg).unwrap().validate().unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["templates.exemplars", "templates.redact"]);
    let cfg = format!("{MINIMAL}\n[templates]\nenabled = true\nredact_builtin = [\"phone\"]\n");
    let problems = AgentConfig::parse(&cfg).unwrap().validate().unwrap_err();
    assert!(
        problems[0].message.contains("unknown built-in"),
        "{problems:?}"
    );
    let settings = AgentConfig::parse(&format!("{MINIMAL}\n[templates]\nenabled = true\n"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(settings.templates.exemplars, 3);
    assert_eq!(
        settings.templates.redact_builtin,
        ["url_credentials", "email", "mac", "ip", "serial", "user"]
    );
}

#[test]
fn the_packet_size_message_says_what_happens_to_oversized_packets() {
    let bad = MINIMAL.replace(
        "subscribe = [\"plant/#\"]",
        "subscribe = [\"plant/#\"]\nmax_packet_size = 1024",
    );
    let problems = AgentConfig::parse(&bad).unwrap().validate().unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "mqtt.max_packet_size");
    let message = &problems[0].message;
    assert!(
        message.contains("cut to its first max_packet_size bytes"),
        "{message}"
    );
    assert!(message.contains("too_large"), "{message}");
    assert!(!message.contains("breaks the connection"), "{message}");
}

const LOG_ROUTE: &str = "[[routes]]\ntopic = \"plant/+/logs\"\nformat = \"text\"\n[uplink]";

fn with_window(extra_route: bool, window: &str) -> AgentConfig {
    let mut text = MINIMAL.to_owned();
    if extra_route {
        text = text.replace("[uplink]", LOG_ROUTE);
    }
    AgentConfig::parse(&text.replace("[uplink]", &format!("[window]\n{window}\n[uplink]"))).unwrap()
}

#[test]
fn gateway_time_routes_need_idle_close_at_least_the_width() {
    let short = with_window(true, "width = \"60s\"\nidle_close = \"3s\"");
    let problems = short.gateway_time_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "window.idle_close");
    let message = problems[0].to_string();
    for part in [
        "window.idle_close: is 3s",
        "window.width (1m)",
        "routes[1]",
        "late",
    ] {
        assert!(message.contains(part), "{part} missing in {message}");
    }
    // Still accepted (a warning): demo.toml and the test harness rely on it.
    assert!(short.validate().is_ok());

    for fine in [
        with_window(true, "width = \"60s\"\nidle_close = \"60s\""),
        with_window(true, "width = \"10s\"\nidle_close = \"2m\""),
        // Defaults: 60 s windows, 120 s idle close.
        with_window(true, ""),
        // Payload-time routes only: a short idle close is fine.
        with_window(false, "width = \"60s\"\nidle_close = \"3s\""),
    ] {
        assert_eq!(fine.gateway_time_problems(), Vec::new());
    }
}

#[test]
fn metrics_listen_and_telemetry_are_checked_with_the_rest() {
    let s = AgentConfig::parse(&format!("metrics_listen = \"127.0.0.1:9464\"\n{MINIMAL}"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(s.telemetry, telemetry::TelemetryConfig::default());
    let bad = format!(
        "metrics_listen = \"localhost\"\n{}\n[telemetry]\notlp_endpoint = \"ftp://x\"\n",
        MINIMAL.replace("gw-1", "gw 1")
    );
    let problems = AgentConfig::parse(&bad).unwrap().validate().unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["gateway_id", "metrics_listen", "telemetry.otlp_endpoint"]
    );
    assert!(
        problems[1].message.contains("127.0.0.1:9464"),
        "{problems:?}"
    );
    let none = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
    assert_eq!(none.metrics_listen, None);
}

#[test]
fn unknown_keys_are_rejected() {
    let err = AgentConfig::parse(&format!("{MINIMAL}\nsurprise = 1")).unwrap_err();
    assert!(err.contains("surprise"), "{err}");
}
