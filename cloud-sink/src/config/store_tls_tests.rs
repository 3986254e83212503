//! Unit tests of the `[store.tls]` table and of the URL `sslmode` rule
//! (files made in a temp directory; nothing is connected).

use super::*;

const HASH: &str = "2e9e6e4d3bd1cd4a3ec5a3cd2a61a5a2eaf3e6b4c5f9d6f0b6c1b2c3d4e5f607";

/// A valid config on the embedded store.
fn good() -> SinkConfig {
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"var/x\"\n\
         [[gateways]]\nid = \"gw-1\"\ntoken_sha256 = \"{HASH}\"\n"
    );
    SinkConfig::parse(Path::new("x.toml"), &text).unwrap()
}

fn paths(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn store_tls_problems_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not checked here").unwrap();
    let mut c = good();
    c.data_dir = PathBuf::new();
    c.store.backend = Backend::Postgres;
    c.store.url = Some("postgres://sink@db.internal:5432/d".into());
    c.store.tls = Some(PgTlsConfig::default());
    let problems = c.validate().unwrap_err();
    assert_eq!(paths(&problems), ["store.tls.ca_file"]);
    assert!(
        problems[0].message.contains("verify-full"),
        "{}",
        problems[0]
    );

    // Half a client pair and missing files, each at its key.
    c.store.tls = Some(PgTlsConfig {
        mode: PgTlsMode::VerifyCa,
        ca_file: Some(ca.clone()),
        client_cert_file: Some(dir.path().join("missing.pem")),
        client_key_file: None,
    });
    let problems = c.validate().unwrap_err();
    assert_eq!(
        paths(&problems),
        ["store.tls.client_key_file", "store.tls.client_cert_file"]
    );
    assert!(problems[0].message.contains("both or neither"));
    assert!(problems[1].message.contains("missing.pem"));

    c.store.tls.as_mut().unwrap().client_cert_file = None;
    assert_eq!(c.validate(), Ok(()));
    let settings = c.store.settings().unwrap().unwrap();
    assert_eq!(
        settings.tls.as_ref().map(|t| t.mode),
        Some(PgTlsMode::VerifyCa)
    );

    // mode = "disable" is no TLS, and takes no files.
    c.store.tls = Some(PgTlsConfig {
        mode: PgTlsMode::Disable,
        ca_file: Some(ca.clone()),
        ..PgTlsConfig::default()
    });
    assert_eq!(paths(&c.validate().unwrap_err()), ["store.tls.ca_file"]);
    c.store.tls.as_mut().unwrap().ca_file = None;
    assert_eq!(c.validate(), Ok(()));
    assert!(c.store.settings().unwrap().unwrap().tls.is_none());

    // Only PostgreSQL takes [store.tls].
    let mut e = good();
    e.store.tls = Some(PgTlsConfig::default());
    assert_eq!(paths(&e.validate().unwrap_err()), ["store.tls"]);
}

#[test]
fn url_sslmode_must_agree_with_store_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let mut c = good();
    c.data_dir = PathBuf::new();
    c.store.backend = Backend::Postgres;
    let problem = |c: &SinkConfig| {
        let problems = c.validate().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems[0].to_string()
    };

    c.store.url = Some("postgres://sink@db/d?sslmode=require".into());
    let text = problem(&c);
    assert!(text.starts_with("store.url: sslmode=require"), "{text}");
    assert!(text.contains("[store.tls]"), "{text}");
    c.store.url = Some("postgres://sink@db/d?sslmode=disable".into());
    assert_eq!(c.validate(), Ok(()));
    c.store.url = Some("postgres://sink@db/d?sslmode=verify-full".into());
    let text = problem(&c);
    assert!(text.contains("TLS is set in [store.tls]"), "{text}");

    c.store.tls = Some(PgTlsConfig {
        ca_file: Some(ca),
        ..PgTlsConfig::default()
    });
    c.store.url = Some("postgres://sink@db/d?sslmode=disable".into());
    assert!(problem(&c).contains("contradicts"));
    for ok in ["", "?sslmode=require", "?sslmode=prefer"] {
        c.store.url = Some(format!("postgres://sink@db/d{ok}"));
        assert_eq!(c.validate(), Ok(()), "{ok}");
    }
    c.store.url = Some("postgres://sink@%2Fvar%2Frun%2Fpostgresql/d".into());
    assert!(problem(&c).contains("Unix socket"));

    // The same rule for a URL read from the environment, at start-up.
    let var = format!("SINK_PG_TLS_URL_{}", std::process::id());
    std::env::set_var(&var, "postgres://sink:pw@db/d?sslmode=disable");
    c.store.url = None;
    c.store.url_env = Some(var);
    assert_eq!(c.validate(), Ok(()));
    let err = c.store.settings().unwrap_err();
    assert_eq!(err.path, "store.url_env");
    assert!(err.message.contains("contradicts"), "{err}");
}

#[test]
fn store_tls_parses_strictly_and_resolves_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sink.toml");
    let text = format!(
        "listen = \"127.0.0.1:1\"\n[store]\nbackend = \"postgres\"\nurl_env = \"X\"\n\
         [store.tls]\nmode = \"verify-ca\"\nca_file = \"pg/ca.pem\"\n\
         client_cert_file = \"/abs/c.pem\"\nclient_key_file = \"c.key\"\n\
         [[gateways]]\nid = \"g\"\ntoken_sha256 = \"{HASH}\"\n"
    );
    std::fs::write(&path, &text).unwrap();
    let c = match SinkConfig::load(&path).unwrap_err() {
        ConfigError::Invalid { problems, .. } => {
            // Nothing is there, so every file is a problem, named with its
            // path resolved against the config's folder.
            assert_eq!(
                paths(&problems),
                [
                    "store.tls.ca_file",
                    "store.tls.client_cert_file",
                    "store.tls.client_key_file"
                ]
            );
            let ca = dir.path().join("pg/ca.pem");
            assert!(problems[0].message.contains(&ca.display().to_string()));
            assert!(problems[1].message.contains("/abs/c.pem"));
            SinkConfig::parse(&path, &text).unwrap()
        }
        other => panic!("unexpected {other:?}"),
    };
    let tls = c.store.tls.unwrap();
    assert_eq!(tls.mode, PgTlsMode::VerifyCa);
    assert_eq!(tls.ca_file, Some(PathBuf::from("pg/ca.pem")));

    for bad in ["mode = \"require\"", "sslmode = \"verify-full\""] {
        let text = format!("listen = \"a\"\n[store.tls]\n{bad}\n");
        match SinkConfig::parse(Path::new("x.toml"), &text).unwrap_err() {
            ConfigError::Parse { line, .. } => assert_eq!(line, 3, "{bad}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
