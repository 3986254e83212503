//! The `[store.tls]` sub-table: TLS from the sink to PostgreSQL (which checks
//! to make on the server's certificate, the CA to check it against, and an
//! optional client certificate), and how it must agree with the URL's `sslmode`.
//!
//! Describes and checks the keys only; reading the PEM files and building the
//! rustls client config is `crate::pg::tls`'s job at start-up.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio_postgres::config::{Host, SslMode, SslNegotiation};

use super::ConfigProblem;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgTlsMode {
    /// No TLS (the same as leaving `[store.tls]` out).
    Disable,
    /// TLS; the certificate chain must lead to `ca_file`, any host name is accepted.
    VerifyCa,
    /// TLS; the chain must lead to `ca_file` and the certificate must name the
    /// host of the URL (a DNS name or an IP address). The default.
    #[default]
    VerifyFull,
}

impl PgTlsMode {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            PgTlsMode::Disable => "disable",
            PgTlsMode::VerifyCa => "verify-ca",
            PgTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// `[store.tls]`. Absent (the default): no TLS, as with `mode = "disable"`.
///
/// ```toml
/// [store.tls]
/// mode = "verify-full"                       # or "verify-ca", "disable"
/// ca_file = "/etc/cloud-sink/pg-ca.pem"       # required unless disabled
/// client_cert_file = "/etc/cloud-sink/pg-client.pem"   # optional, with the key
/// client_key_file = "/etc/cloud-sink/pg-client.key"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTlsConfig {
    #[serde(default)]
    pub mode: PgTlsMode,
    /// PEM CA certificate(s) the server's chain must lead to. There are no
    /// built-in roots: required unless `mode = "disable"`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) presented to the server, for
    /// `cert` authentication in `pg_hba.conf`; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

impl PgTlsConfig {
    /// True unless `mode = "disable"`.
    pub fn enabled(&self) -> bool {
        self.mode != PgTlsMode::Disable
    }

    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.ca_file,
            &mut self.client_cert_file,
            &mut self.client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Appends this table's problems (files are checked for presence only;
    /// their contents are read at start-up).
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        let files = [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ];
        if !self.enabled() {
            for (key, path) in files {
                if path.is_some() {
                    problems.push(ConfigProblem::new(
                        format!("store.tls.{key}"),
                        "not used with mode = \"disable\"; remove it",
                    ));
                }
            }
            return;
        }
        if self.ca_file.is_none() {
            problems.push(ConfigProblem::new(
                "store.tls.ca_file",
                format!(
                    "required with mode = \"{}\" (the PEM CA that signed the server's certificate)",
                    self.mode.as_str()
                ),
            ));
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => problems.push(ConfigProblem::new(
                "store.tls.client_key_file",
                "required with client_cert_file (give both or neither)",
            )),
            (None, Some(_)) => problems.push(ConfigProblem::new(
                "store.tls.client_cert_file",
                "required with client_key_file (give both or neither)",
            )),
            _ => {}
        }
        for (key, path) in files {
            if let Some(path) = path {
                if !path.is_file() {
                    problems.push(ConfigProblem::new(
                        format!("store.tls.{key}"),
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
    }
}

/// Whether the URL's TLS options agree with `[store.tls]`; `key` is where the
/// URL came from (`store.url` or `store.url_env`). `[store.tls]` decides: the
/// URL may repeat it (`sslmode=require` with TLS, `disable` or `prefer`
/// without) but not contradict it.
pub(super) fn url_problem(
    key: &str,
    url: &tokio_postgres::Config,
    tls: Option<&PgTlsConfig>,
) -> Option<ConfigProblem> {
    let tls_on = tls.is_some_and(PgTlsConfig::enabled);
    let problem = |message: String| Some(ConfigProblem::new(key, message));
    match (url.get_ssl_mode(), tls_on) {
        (SslMode::Require, false) => {
            return problem(
                "sslmode=require asks for TLS, but [store.tls] is absent or mode = \"disable\": \
                 add [store.tls] with mode = \"verify-full\" and ca_file (TLS is configured \
                 there, not in the URL)"
                    .into(),
            )
        }
        (SslMode::Disable, true) => {
            return problem(format!(
            "sslmode=disable contradicts [store.tls] mode = \"{}\": remove sslmode from the URL",
            tls.map_or("", |t| t.mode.as_str())
        ))
        }
        // `prefer` is also the driver's default, so it reads as "not given":
        // with [store.tls] the sink requires TLS, without it it does not try.
        _ => {}
    }
    if url.get_ssl_negotiation() == SslNegotiation::Direct && !tls_on {
        return problem("sslnegotiation=direct needs TLS: add [store.tls]".into());
    }
    if tls_on && url.get_hosts().iter().any(|h| !matches!(h, Host::Tcp(_))) {
        return problem(
            "[store.tls] needs a TCP host: PostgreSQL does not use TLS on Unix sockets".into(),
        );
    }
    None
}

/// A hint for a URL the driver refused: libpq's TLS options are not read
/// from the URL, `[store.tls]` holds them.
pub(super) fn url_parse_hint(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    let libpq_only = [
        "sslmode=verify",
        "sslmode=allow",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
    ];
    if libpq_only.iter().any(|o| lower.contains(o)) {
        " (TLS is set in [store.tls]: mode, ca_file, client_cert_file, client_key_file; \
         the URL may only say sslmode=require, prefer or disable)"
    } else {
        ""
    }
}
