//! The `[tls]` section: serve HTTPS with a certificate and key, and optionally
//! require gateways to present a client certificate signed by a given CA (mTLS).
//!
//! Describes and checks the keys only; reading the PEM files and building the
//! rustls server config is [`crate::tls`]'s job at start-up (a bad file stops
//! the sink with an error naming it).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigProblem;

/// `[tls]`.
///
/// ```toml
/// [tls]
/// cert_file = "/etc/cloud-sink/server.pem"   # chain, leaf first
/// key_file = "/etc/cloud-sink/server.key"
/// client_ca_file = "/etc/cloud-sink/gateways-ca.pem"   # optional: mTLS
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkTlsConfig {
    /// PEM certificate chain of the sink, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key_file: PathBuf,
    /// PEM CA(s) whose client certificates are accepted. When set, every
    /// connection must present one (mTLS); gateways still authenticate with
    /// their token unless their `[[gateways]] cert_sha256` names the certificate.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl SinkTlsConfig {
    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.cert_file, &mut self.key_file]
            .into_iter()
            .chain(self.client_ca_file.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Reports files that are not there (their contents are checked at start-up).
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        let files = [
            ("tls.cert_file", Some(&self.cert_file)),
            ("tls.key_file", Some(&self.key_file)),
            ("tls.client_ca_file", self.client_ca_file.as_ref()),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                if !path.is_file() {
                    problems.push(ConfigProblem::new(
                        key,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
    }
}
