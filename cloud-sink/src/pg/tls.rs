//! TLS from the sink to PostgreSQL: the rustls client config `[store.tls]`
//! describes (verify-full: chain and host name; verify-ca: chain only; an
//! optional client certificate), and what a failed connection most likely
//! means, in words an operator can act on.
//!
//! It opens no connection: `tokio-postgres-rustls` runs the handshake inside
//! the driver (with `tls-server-end-point` channel binding for SCRAM), and
//! `super::PgStore::connect` decides when to give up. The crypto provider is
//! rustls' `ring`, passed explicitly.

use std::sync::Arc;

use edge_agent::tls::{read_certs, read_key, read_roots, TlsError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct};

use crate::config::{PgTlsConfig, PgTlsMode};

/// Why the TLS client config could not be built from `[store.tls]`.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// A file is missing, unreadable or not the PEM it should be.
    #[error(transparent)]
    Files(#[from] TlsError),
    /// The CA could not be used to verify servers.
    #[error("store.tls.ca_file: {0}")]
    Ca(String),
    /// The client certificate and key do not fit together.
    #[error("store.tls.client_cert_file / store.tls.client_key_file: {0}")]
    ClientAuth(String),
    /// rustls refused the settings.
    #[error("store.tls: {0}")]
    Build(String),
}

/// The rustls client config `tls` describes (not called for `mode = "disable"`).
pub fn client_config(tls: &PgTlsConfig) -> Result<ClientConfig, PgTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = tls
        .ca_file
        .as_deref()
        .ok_or_else(|| PgTlsError::Ca("required unless mode = \"disable\"".into()))?;
    let roots = Arc::new(read_roots("store.tls.ca_file", ca)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| PgTlsError::Ca(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgTlsError::Build(e.to_string()))?;
    let builder = match tls.mode {
        PgTlsMode::VerifyCa => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki))),
        PgTlsMode::VerifyFull | PgTlsMode::Disable => builder.with_webpki_verifier(webpki),
    };
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("store.tls.client_cert_file", cert)?;
            let key = read_key("store.tls.client_key_file", key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| PgTlsError::ClientAuth(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `verify-ca`: the WebPKI checks (chain to `ca_file`, validity dates, key
/// usage, signatures) without the host-name check. rustls checks the name
/// last, after the chain, so forgiving only that error keeps every other check.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a failed connection most likely means, when it is about TLS or
/// client certificates (`None` otherwise: the error chain says enough).
pub fn explain(error: &tokio_postgres::Error) -> Option<&'static str> {
    if let Some(db) = error.as_db_error() {
        return explain_server_message(db.message());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        // tokio-rustls wraps rustls errors in io::Error, whose source() skips them.
        let tls = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| e.downcast_ref::<rustls::Error>());
        if let Some(hint) = tls.and_then(explain_rustls) {
            return Some(hint);
        }
        if e.to_string().contains("server does not support TLS") {
            return Some(
                "the server does not offer TLS (ssl = off in postgresql.conf?) and \
                 [store.tls] requires it",
            );
        }
        source = e.source();
    }
    None
}

fn explain_rustls(error: &rustls::Error) -> Option<&'static str> {
    use CertificateError as C;
    Some(match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => {
                "the server's certificate is not signed by the CA in store.tls.ca_file (wrong CA?)"
            }
            C::Expired | C::ExpiredContext { .. } => {
                "the server's certificate has expired (or this machine's clock is wrong)"
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (or this machine's clock is wrong)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server's certificate does not name the URL's host (store.tls mode = \
                 \"verify-full\"): connect by a name or address it holds"
            }
            _ => return None,
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the server requires a client certificate: set store.tls.client_cert_file and \
                 store.tls.client_key_file"
            }
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => {
                "the server refused the client certificate (store.tls.client_cert_file not \
                 signed by the server's ssl_ca_file, expired or revoked?)"
            }
            _ => return None,
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server did not answer with TLS (is it PostgreSQL?)"
        }
        _ => return None,
    })
}

/// Hints for the server's own refusals that concern certificates or TLS.
fn explain_server_message(message: &str) -> Option<&'static str> {
    if message.contains("requires a valid client certificate") {
        Some(
            "the server requires a client certificate for this user (pg_hba.conf cert): set \
             store.tls.client_cert_file and store.tls.client_key_file",
        )
    } else if message.contains("certificate authentication failed") {
        Some(
            "the client certificate's common name (CN) is not the URL's user name \
             (or the server's pg_ident.conf map)",
        )
    } else if message.contains("no pg_hba.conf entry") && message.contains("no encryption") {
        Some("the server accepts this user only over TLS (hostssl): add [store.tls]")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn builds_each_mode_and_names_the_key_of_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair();
        let (_, other_key) = pem_pair();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let mut tls = PgTlsConfig {
            mode: PgTlsMode::VerifyFull,
            ca_file: Some(write("ca.pem", &cert)),
            client_cert_file: None,
            client_key_file: None,
        };
        assert!(!client_config(&tls)
            .unwrap()
            .client_auth_cert_resolver
            .has_certs());
        tls.mode = PgTlsMode::VerifyCa;
        tls.client_cert_file = Some(write("c.pem", &cert));
        tls.client_key_file = Some(write("c.key", &key));
        assert!(client_config(&tls)
            .unwrap()
            .client_auth_cert_resolver
            .has_certs());

        tls.client_key_file = Some(write("other.key", &other_key));
        let err = client_config(&tls).unwrap_err().to_string();
        assert!(
            err.starts_with("store.tls.client_cert_file / store.tls.client_key_file"),
            "{err}"
        );
        tls.client_key_file = Some(write("empty.key", ""));
        let err = client_config(&tls).unwrap_err().to_string();
        assert!(err.starts_with("store.tls.client_key_file"), "{err}");
        tls.ca_file = Some(write("garbled.pem", "-----BEGIN CERTIFICATE-----\n!!\n"));
        let err = client_config(&tls).unwrap_err().to_string();
        assert!(err.starts_with("store.tls.ca_file"), "{err}");
    }
}
