//! Unit tests of the config file format and its validation (no files, no models).

use super::*;

const HASH: &str = "2e9e6e4d3bd1cd4a3ec5a3cd2a61a5a2eaf3e6b4c5f9d6f0b6c1b2c3d4e5f607";

fn good() -> SinkConfig {
    SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir: "var/x".into(),
        store: Default::default(),
        limits: Limits::default(),
        tls: None,
        gateways: vec![GatewayConfig {
            id: "gw-1".into(),
            token_sha256: HASH.into(),
            cert_sha256: Default::default(),
        }],
        teachers: vec![TeacherConfig {
            series: "anomaly".into(),
            path: "m/teacher.onnx".into(),
            recipe: None,
        }],
    }
}

fn paths(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn good_config_validates() {
    assert_eq!(good().validate(), Ok(()));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let mut c = good();
    c.listen = "localhost".into();
    c.data_dir = PathBuf::new();
    c.limits.max_body_bytes = 0;
    c.gateways.push(GatewayConfig {
        id: "gw-1".into(),
        token_sha256: "abc".into(),
        cert_sha256: Default::default(),
    });
    c.gateways.push(GatewayConfig {
        id: "bad id!".into(),
        token_sha256: "g".repeat(64).into(),
        cert_sha256: Default::default(),
    });
    c.gateways.push(GatewayConfig {
        id: String::new(),
        token_sha256: HASH.into(),
        cert_sha256: Default::default(),
    });
    let problems = c.validate().unwrap_err();
    assert_eq!(
        paths(&problems),
        [
            "listen",
            "data_dir",
            "limits.max_body_bytes",
            "gateways[1].id",
            "gateways[1].token_sha256",
            "gateways[2].id",
            "gateways[2].token_sha256",
            "gateways[3].id",
            "gateways[3].token_sha256",
        ]
    );
    // gateways[3] reuses gateways[0]'s token hash: one token, two gateways.
    assert!(problems[8].message.contains("listed twice"));
    assert!(problems[3].message.contains("duplicate"));
    assert!(problems[4].message.contains("64 hex"));
    assert_eq!(
        problems[4].to_string(),
        "gateways[1].token_sha256: expected 64 hex characters (the SHA-256 of the token)"
    );
}

#[test]
fn no_gateways_and_oversize_limit_are_problems() {
    let mut c = good();
    c.gateways.clear();
    c.limits.max_body_bytes = wire::MAX_ENVELOPE_BYTES + 1;
    let problems = c.validate().unwrap_err();
    assert_eq!(paths(&problems), ["limits.max_body_bytes", "gateways"]);
}

#[test]
fn gateway_id_rules() {
    assert!(is_valid_gateway_id("gw-01.a_b"));
    assert!(is_valid_gateway_id(&"a".repeat(64)));
    assert!(!is_valid_gateway_id(&"a".repeat(65)));
    assert!(!is_valid_gateway_id(""));
    assert!(!is_valid_gateway_id("gw/1"));
    assert!(!is_valid_gateway_id("gw 1"));
}

#[test]
fn parse_applies_defaults_and_rejects_unknown_keys() {
    let text = format!(
        "listen = \"127.0.0.1:1\"\ndata_dir = \"d\"\n[[gateways]]\nid = \"g\"\ntoken_sha256 = \"{HASH}\"\n"
    );
    let c = SinkConfig::parse(Path::new("x.toml"), &text).unwrap();
    assert_eq!(c.limits.max_body_bytes, wire::MAX_ENVELOPE_BYTES);
    assert_eq!(c.validate(), Ok(()));

    let bad = format!("{text}colour = \"red\"\n");
    match SinkConfig::parse(Path::new("x.toml"), &bad).unwrap_err() {
        ConfigError::Parse { line, message, .. } => {
            assert_eq!(line, 6);
            assert!(message.contains("colour"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }

    let typo = "listen = \"a\"\ndata_dir = \"d\"\n[limits]\nmax_body = 3\n";
    match SinkConfig::parse(Path::new("x.toml"), typo).unwrap_err() {
        ConfigError::Parse { line, .. } => assert_eq!(line, 4),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn sha256_hex_parsing() {
    assert!(parse_sha256_hex(HASH).is_some());
    assert!(parse_sha256_hex(&HASH.to_uppercase()).is_some());
    assert!(parse_sha256_hex(&HASH[1..]).is_none());
    assert!(parse_sha256_hex(&"z".repeat(64)).is_none());
}

#[test]
fn teacher_problems_are_reported_with_their_path() {
    let mut c = good();
    c.teachers.push(TeacherConfig {
        series: "anomaly".into(),
        path: "other.onnx".into(),
        recipe: None,
    });
    c.teachers.push(TeacherConfig {
        series: "no spaces".into(),
        path: PathBuf::new(),
        recipe: Some(PathBuf::new()),
    });
    let problems = c.validate().unwrap_err();
    assert_eq!(
        paths(&problems),
        [
            "teachers[1].series",
            "teachers[2].series",
            "teachers[2].path",
            "teachers[2].recipe"
        ]
    );
    assert!(problems[0].message.contains("already has a teacher"));
}

#[test]
fn teacher_paths_resolve_against_the_config_folder_and_sidecar_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sink.toml");
    let text = format!(
        "listen = \"127.0.0.1:1\"\ndata_dir = \"d\"\n[[gateways]]\nid = \"g\"\ntoken_sha256 = \"{HASH}\"\n\
         [[teachers]]\nseries = \"anomaly\"\npath = \"models/t.onnx\"\n\
         [[teachers]]\nseries = \"other\"\npath = \"/abs/t.onnx\"\nrecipe = \"r.json\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let c = SinkConfig::load(&path).unwrap();
    assert_eq!(c.teachers[0].path, dir.path().join("models/t.onnx"));
    assert_eq!(
        c.teachers[0].recipe_path(),
        dir.path().join("models/t.json")
    );
    assert_eq!(c.teachers[1].path, PathBuf::from("/abs/t.onnx"));
    assert_eq!(c.teachers[1].recipe_path(), dir.path().join("r.json"));
    // The data directory stays relative to the working directory.
    assert_eq!(c.data_dir, PathBuf::from("d"));

    let typo =
        "listen = \"a\"\ndata_dir = \"d\"\n[[teachers]]\nseries = \"x\"\nmodel = \"t.onnx\"\n";
    match SinkConfig::parse(Path::new("x.toml"), typo).unwrap_err() {
        ConfigError::Parse { message, .. } => assert!(message.contains("model"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn store_section_problems_are_reported_with_their_path() {
    // Embedded (the default) needs data_dir and takes no PostgreSQL keys.
    let mut c = good();
    c.store.url = Some("postgres://u@h/d".into());
    c.store.schema = Some("s".into());
    assert_eq!(
        paths(&c.validate().unwrap_err()),
        ["store.url", "store.schema"]
    );

    let mut c = good();
    c.store.backend = Backend::Postgres;
    c.store.url = Some("postgres://u:hunter2@h/d".into());
    c.store.url_env = Some("1BAD".into());
    c.store.schema = Some("Bad-Name".into());
    c.store.pool_size = 0;
    c.store.connect_attempts = 0;
    let problems = c.validate().unwrap_err();
    assert_eq!(
        paths(&problems),
        [
            "data_dir",
            "store.url",
            "store.schema",
            "store.pool_size",
            "store.connect_attempts"
        ]
    );
    assert!(problems[1].message.contains("not both"));

    c.data_dir = PathBuf::new();
    c.store.url_env = None;
    c.store.schema = Some("sink_1".into());
    c.store.pool_size = 8;
    c.store.connect_attempts = 3;
    let problems = c.validate().unwrap_err();
    assert_eq!(paths(&problems), ["store.url"]);
    assert!(problems[0].message.contains("password"), "{}", problems[0]);
    assert!(!problems[0].message.contains("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));

    c.store.url = Some("postgres://u@h:5432/d".into());
    assert_eq!(c.validate(), Ok(()));
    c.store.url = Some("postgres://u@h:notaport/d".into());
    assert_eq!(paths(&c.validate().unwrap_err()), ["store.url"]);
    c.store.url = None;
    assert_eq!(paths(&c.validate().unwrap_err()), ["store"]);
    c.store.url_env = Some("SINK_PG_URL".into());
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn store_section_parses_strictly() {
    let text = format!(
        "listen = \"127.0.0.1:1\"\n[store]\nbackend = \"postgres\"\nurl_env = \"X\"\n\
         [[gateways]]\nid = \"g\"\ntoken_sha256 = \"{HASH}\"\n"
    );
    let c = SinkConfig::parse(Path::new("x.toml"), &text).unwrap();
    assert_eq!(c.store.backend, Backend::Postgres);
    assert_eq!((c.store.pool_size, c.store.connect_attempts), (8, 5));
    assert_eq!(c.validate(), Ok(()));

    for bad in ["backend = \"mysql\"", "password = \"x\""] {
        let text = format!("listen = \"a\"\n[store]\n{bad}\n");
        match SinkConfig::parse(Path::new("x.toml"), &text).unwrap_err() {
            ConfigError::Parse { line, .. } => assert_eq!(line, 3, "{bad}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn token_hashes_take_a_list_and_security_keys_are_checked() {
    let other = HASH.replace('2', "3");
    let text = format!(
        "listen = \"127.0.0.1:1\"\ndata_dir = \"d\"\n[limits]\nbatches_per_second = -1\nburst = 0\n\
         [[gateways]]\nid = \"g\"\ntoken_sha256 = [\"{HASH}\", \"{other}\"]\ncert_sha256 = \"{HASH}\"\n\
         [tls]\ncert_file = \"missing.pem\"\nkey_file = \"missing.key\"\n"
    );
    let c = SinkConfig::parse(Path::new("x.toml"), &text).unwrap();
    assert_eq!(c.gateways[0].token_sha256.0, [HASH.to_owned(), other]);
    let problems = c.validate().unwrap_err();
    assert_eq!(
        paths(&problems),
        [
            "limits.batches_per_second",
            "limits.burst",
            "tls.cert_file",
            "tls.key_file",
            "gateways",
        ]
    );
    assert!(
        problems[4].message.contains("client_ca_file"),
        "{problems:?}"
    );
}
