//! The `[store]` section: which backend keeps the batches (embedded sled, the
//! default, or PostgreSQL) and how to reach PostgreSQL.
//!
//! Shape checks only: it reads no environment variable and opens no
//! connection (that is [`StoreConfig::settings`] and `crate::pg` at start-up).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::store_tls::{url_parse_hint, url_problem};
use super::{ConfigProblem, PgTlsConfig};

/// Which store keeps the batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// sled in `data_dir` (one sink process per directory).
    #[default]
    Embedded,
    /// A PostgreSQL database (several sink replicas may share it).
    Postgres,
}

/// `[store]`. Every key is optional; the default is the embedded store.
///
/// Its `Debug` output never shows the URL's password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: Backend,
    /// Connection URL (`postgres://user@host:5432/db`); must not hold a password.
    pub url: Option<String>,
    /// Name of the environment variable holding the URL (may hold a password).
    pub url_env: Option<String>,
    /// Schema the sink's tables live in (created if missing). Default `public`.
    pub schema: Option<String>,
    /// Most connections one sink process opens.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Connection attempts at start-up before giving up (backoff 0.5 s doubling to 8 s).
    #[serde(default = "default_connect_attempts")]
    pub connect_attempts: u32,
    /// `[store.tls]`: TLS to PostgreSQL. Absent: no TLS (plain TCP or a Unix socket).
    #[serde(default)]
    pub tls: Option<PgTlsConfig>,
}

fn default_pool_size() -> usize {
    8
}

fn default_connect_attempts() -> u32 {
    5
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Embedded,
            url: None,
            url_env: None,
            schema: None,
            pool_size: default_pool_size(),
            connect_attempts: default_connect_attempts(),
            tls: None,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("url_env", &self.url_env)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_attempts", &self.connect_attempts)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Resolved PostgreSQL settings (after the environment variable is read).
#[derive(Clone)]
pub struct PgSettings {
    /// The parsed connection settings (may hold a password).
    pub config: tokio_postgres::Config,
    /// The URL with any password replaced by `***`, for logs and errors.
    pub display: String,
    pub schema: String,
    pub pool_size: usize,
    pub connect_attempts: u32,
    /// Delay before the second attempt; doubles up to 8 s.
    pub first_backoff: Duration,
    /// TLS to the server; `None` without `[store.tls]` or with `mode = "disable"`.
    pub tls: Option<PgTlsConfig>,
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.display)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls.as_ref().map(|t| t.mode))
            .finish_non_exhaustive()
    }
}

/// Largest accepted `pool_size`.
pub const MAX_POOL_SIZE: usize = 256;

impl StoreConfig {
    /// Appends every problem of this section (and of `data_dir`, which only
    /// the embedded store uses) to `problems`.
    pub(crate) fn check(&self, data_dir: &Path, problems: &mut Vec<ConfigProblem>) {
        match self.backend {
            Backend::Embedded => {
                if data_dir.as_os_str().is_empty() {
                    problems.push(ConfigProblem::new("data_dir", "must not be empty"));
                }
                for (key, given) in [
                    ("url", self.url.is_some()),
                    ("url_env", self.url_env.is_some()),
                    ("schema", self.schema.is_some()),
                    ("tls", self.tls.is_some()),
                ] {
                    if given {
                        problems.push(ConfigProblem::new(
                            format!("store.{key}"),
                            "only used with backend = \"postgres\"",
                        ));
                    }
                }
            }
            Backend::Postgres => self.check_postgres(data_dir, problems),
        }
    }

    fn check_postgres(&self, data_dir: &Path, problems: &mut Vec<ConfigProblem>) {
        if !data_dir.as_os_str().is_empty() {
            problems.push(ConfigProblem::new(
                "data_dir",
                "not used with store.backend = \"postgres\"; remove it",
            ));
        }
        match (&self.url, &self.url_env) {
            (None, None) => problems.push(ConfigProblem::new(
                "store",
                "backend \"postgres\" needs url or url_env",
            )),
            (Some(_), Some(_)) => problems.push(ConfigProblem::new(
                "store.url",
                "give url or url_env, not both",
            )),
            (Some(url), None) => match tokio_postgres::Config::from_str(url) {
                Err(e) => problems.push(ConfigProblem::new(
                    "store.url",
                    format!("not a PostgreSQL URL ({e}){}", url_parse_hint(url)),
                )),
                Ok(c) if c.get_password().is_some() => problems.push(ConfigProblem::new(
                    "store.url",
                    "holds a password: keep secrets out of config files, put the URL in the \
                     environment variable named by url_env",
                )),
                Ok(c) => problems.extend(url_problem("store.url", &c, self.tls.as_ref())),
            },
            (None, Some(name)) => {
                let ok = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    problems.push(ConfigProblem::new(
                        "store.url_env",
                        format!("{name:?} is not an environment variable name (A-Z a-z 0-9 _)"),
                    ));
                }
            }
        }
        if let Some(schema) = &self.schema {
            if !is_identifier(schema) {
                problems.push(ConfigProblem::new(
                    "store.schema",
                    format!(
                        "{schema:?} must be 1-63 characters of a-z 0-9 _, not starting with a digit"
                    ),
                ));
            }
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            problems.push(ConfigProblem::new(
                "store.pool_size",
                format!(
                    "must be between 1 and {MAX_POOL_SIZE}, got {}",
                    self.pool_size
                ),
            ));
        }
        if !(1..=100).contains(&self.connect_attempts) {
            problems.push(ConfigProblem::new(
                "store.connect_attempts",
                format!("must be between 1 and 100, got {}", self.connect_attempts),
            ));
        }
        if let Some(tls) = &self.tls {
            tls.check(problems);
        }
    }

    /// The PostgreSQL settings, reading `url_env` now; `None` for the
    /// embedded backend. Call after validation; the error says what is missing
    /// without showing any secret.
    pub fn settings(&self) -> Result<Option<PgSettings>, ConfigProblem> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let url = match (&self.url, &self.url_env) {
            (Some(url), _) => url.clone(),
            (None, Some(name)) => std::env::var(name).map_err(|e| {
                ConfigProblem::new(
                    "store.url_env",
                    format!("environment variable {name} is not usable: {e}"),
                )
            })?,
            (None, None) => {
                return Err(ConfigProblem::new("store", "url or url_env is required"));
            }
        };
        let key = if self.url.is_some() {
            "store.url"
        } else {
            "store.url_env"
        };
        let config = tokio_postgres::Config::from_str(&url).map_err(|e| {
            ConfigProblem::new(
                key,
                format!(
                    "{}: not a PostgreSQL URL ({e}){}",
                    redact_url(&url),
                    url_parse_hint(&url)
                ),
            )
        })?;
        if let Some(problem) = url_problem(key, &config, self.tls.as_ref()) {
            return Err(problem);
        }
        Ok(Some(PgSettings {
            config,
            display: redact_url(&url),
            schema: self.schema.clone().unwrap_or_else(|| "public".to_owned()),
            pool_size: self.pool_size,
            connect_attempts: self.connect_attempts,
            first_backoff: Duration::from_millis(500),
            tls: self.tls.clone().filter(PgTlsConfig::enabled),
        }))
    }
}

/// True for a plain lower-case SQL identifier: 1-63 of `[a-z0-9_]`, no leading digit.
pub fn is_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `url` with the password (URL userinfo or a `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // URL form: scheme://user:password@host...
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                out.replace_range(from..rest_start + at, "***");
            }
        }
    }
    // Parameter form (URL query or key=value string): password=...
    let lower = out.to_ascii_lowercase();
    if let Some(i) = lower.find("password=") {
        let from = i + "password=".len();
        let end = out[from..].find(['&', ' ']).map_or(out.len(), |j| from + j);
        out.replace_range(from..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:s3cret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            redact_url("postgresql://db/x?user=u&password=p@w&sslmode=disable"),
            "postgresql://db/x?user=u&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=u password=pw dbname=x"),
            "host=db user=u password=*** dbname=x"
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("cloud_sink_1"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("Abc"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
