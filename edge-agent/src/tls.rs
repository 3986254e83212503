//! TLS client settings shared by the MQTT source and the uplink: builds a rustls
//! `ClientConfig` from PEM files (CA, optional client certificate and key for
//! mTLS) and turns handshake failures into messages an operator can act on.
//!
//! It reads files and builds configs; it opens no connection and keeps no state.
//! The crypto provider is rustls' `ring`, passed explicitly, so nothing depends
//! on a process-wide default being installed first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::TlsConfig;

/// Why a TLS config could not be built from its files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {path} is not valid PEM: {message}")]
    Pem {
        key: String,
        path: PathBuf,
        message: String,
    },
    #[error("{key}: {path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { key: String, path: PathBuf },
    #[error("{key}: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { key: String, path: PathBuf },
    #[error("{key}: {path}: a certificate was refused as a trust anchor: {message}")]
    BadCa {
        key: String,
        path: PathBuf,
        message: String,
    },
    #[error("{prefix}: client certificate and key do not fit together: {message}")]
    ClientAuth { prefix: String, message: String },
    #[error("{prefix}: cannot build the TLS client: {message}")]
    Build { prefix: String, message: String },
}

impl TlsError {
    /// A failure to build a client from settings that loaded fine.
    pub fn build(prefix: &str, e: impl std::fmt::Display) -> TlsError {
        TlsError::Build {
            prefix: prefix.to_owned(),
            message: e.to_string(),
        }
    }
}

/// The crypto provider every config here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn pem_error(key: &str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        key: key.to_owned(),
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Every certificate in the PEM file at `path` (at least one).
pub fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(key, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
pub fn read_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            key: key.to_owned(),
            path: path.to_owned(),
        },
        other => pem_error(key, path, other),
    })
}

/// A root store holding every certificate of the PEM file at `path`.
pub fn read_roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(key, path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            key: key.to_owned(),
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The rustls client config `tls` describes; `prefix` is its key path in the
/// agent config (`mqtt.tls`, `uplink.tls`), used in every error.
pub fn client_config(prefix: &str, tls: &TlsConfig) -> Result<ClientConfig, TlsError> {
    let roots = read_roots(&format!("{prefix}.ca_file"), &tls.ca_file)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::build(prefix, e))?
        .with_root_certificates(roots);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(&format!("{prefix}.client_cert_file"), cert)?;
            let key = read_key(&format!("{prefix}.client_key_file"), key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::ClientAuth {
                    prefix: prefix.to_owned(),
                    message: e.to_string(),
                })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// What a failed TLS handshake most likely means, for the log line. `error` is
/// the error's text with its causes (rustls' own wording is kept in it).
pub fn explain_handshake(error: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            "the server's certificate is not signed by the configured ca_file (wrong CA)",
        ),
        (
            "expired",
            "the server's certificate has expired (or the gateway clock is wrong)",
        ),
        (
            "not valid yet",
            "the server's certificate is not valid yet (or the gateway clock is wrong)",
        ),
        (
            "not valid for name",
            "the server's certificate does not name the host the agent connects to",
        ),
        (
            "CertificateRequired",
            "the server requires a client certificate (set client_cert_file and client_key_file)",
        ),
        (
            "UnknownCA",
            "the server does not trust this gateway's client certificate",
        ),
        (
            "BadCertificate",
            "the server refused this gateway's client certificate",
        ),
        (
            "HandshakeFailure",
            "the server refused the handshake (client certificate missing or not accepted?)",
        ),
        (
            "InvalidContentType",
            "the server did not answer with TLS (is the port a plain listener?)",
        ),
        (
            "CorruptMessage",
            "the server did not answer with TLS (is the port a plain listener?)",
        ),
    ];
    let lower = error.to_ascii_lowercase();
    HINTS
        .iter()
        .find(|(needle, _)| lower.contains(&needle.to_ascii_lowercase()))
        .map(|(_, hint)| *hint)
}

/// `error` with every source, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> TlsConfig {
        TlsConfig {
            ca_file: ca.to_owned(),
            client_cert_file: cert.map(Path::to_owned),
            client_key_file: key.map(Path::to_owned),
        }
    }

    fn pem_pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn valid_files_build_with_and_without_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair();
        let (ca, crt, k) = (
            dir.path().join("ca.pem"),
            dir.path().join("c.pem"),
            dir.path().join("c.key"),
        );
        std::fs::write(&ca, &cert).unwrap();
        std::fs::write(&crt, &cert).unwrap();
        std::fs::write(&k, &key).unwrap();
        let plain = client_config("mqtt.tls", &config(&ca, None, None)).unwrap();
        assert!(!plain.client_auth_cert_resolver.has_certs());
        let mutual = client_config("mqtt.tls", &config(&ca, Some(&crt), Some(&k))).unwrap();
        assert!(mutual.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn missing_empty_garbled_and_mismatched_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair();
        let (_, other_key) = pem_pair();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = write("ca.pem", &cert);
        let empty = write("empty.pem", "");
        let garbled = write(
            "garbled.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        );
        let crt = write("c.pem", &cert);
        let wrong_key = write("wrong.key", &other_key);
        let missing = dir.path().join("missing.pem");
        let cases: Vec<(TlsConfig, &str)> = vec![
            (
                config(&missing, None, None),
                "mqtt.tls.ca_file: cannot read",
            ),
            (config(&empty, None, None), "holds no PEM certificate"),
            (config(&garbled, None, None), "is not valid PEM"),
            (
                config(&ca, Some(&crt), Some(&ca)),
                "mqtt.tls.client_key_file",
            ),
            (
                config(&ca, Some(&crt), Some(&wrong_key)),
                "do not fit together",
            ),
        ];
        for (cfg, expected) in cases {
            let e = client_config("mqtt.tls", &cfg).unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} lacks {expected:?}");
        }
        let _ = key;
    }

    #[test]
    fn handshake_errors_get_a_hint() {
        let unknown = "TLS: I/O: invalid peer certificate: UnknownIssuer";
        assert!(explain_handshake(unknown).unwrap().contains("wrong CA"));
        let expired = "invalid peer certificate: certificate expired: verification time 5";
        assert!(explain_handshake(expired).unwrap().contains("expired"));
        assert_eq!(explain_handshake("connection refused"), None);
    }
}
