//! Test certificates made at test time (rcgen): a CA, a server certificate for
//! 127.0.0.1, a client certificate, an expired server certificate, and a second
//! CA with a client certificate of its own, written as PEM files.
//!
//! For tests only: keys are written unencrypted and world-readable (a broker
//! started as root reads them as the `mosquitto` user). Nothing here is kept.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

/// One certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Hex SHA-256 of the certificate's DER (what the sink's `cert_sha256` pins).
    pub sha256: String,
}

/// Everything a TLS test needs, under one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signs `server`, `client` and `expired`.
    pub ca: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost`, valid now.
    pub server: CertFiles,
    /// Server certificate for the same names that expired in 2021.
    pub expired: CertFiles,
    /// Client certificate (CN = the gateway id given), valid now.
    pub client: CertFiles,
    /// Another CA, unrelated to `ca`.
    pub other_ca: PathBuf,
    /// Client certificate signed by `other_ca`.
    pub other_client: CertFiles,
}

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, CertError> {
    let path = dir.join(name);
    let io = |source| CertError::Write {
        path: path.clone(),
        source,
    };
    std::fs::write(&path, text).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    Ok(path)
}

fn ca_params(name: &str) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn leaf(
    dir: &Path,
    name: &str,
    mut params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertFiles, CertError> {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertFiles {
        cert: write(dir, &format!("{name}.pem"), &cert.pem())?,
        key: write(dir, &format!("{name}.key"), &key.serialize_pem())?,
        sha256: hex::encode(Sha256::digest(cert.der())),
    })
}

fn server_params() -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

/// Makes the whole set in `dir` (made world-readable); `client_id` is the
/// client certificate's common name.
pub fn generate(dir: &Path, client_id: &str) -> Result<Pki, CertError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|source| CertError::Write {
            path: dir.to_owned(),
            source,
        })?;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params("edge test CA")?.self_signed(&ca_key)?;
    let ca = write(dir, "ca.pem", &ca_cert.pem())?;
    let issuer = Issuer::new(ca_params("edge test CA")?, ca_key);

    let server = leaf(dir, "server", server_params()?, &issuer)?;
    let mut old = server_params()?;
    old.not_before = date_time_ymd(2020, 1, 1);
    old.not_after = date_time_ymd(2021, 1, 1);
    let expired = leaf(dir, "expired", old, &issuer)?;

    let client_params = || -> Result<CertificateParams, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, client_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    };
    let client = leaf(dir, "client", client_params()?, &issuer)?;

    let other_key = KeyPair::generate()?;
    let other_cert = ca_params("another CA")?.self_signed(&other_key)?;
    let other_ca = write(dir, "other-ca.pem", &other_cert.pem())?;
    let other_issuer = Issuer::new(ca_params("another CA")?, other_key);
    let other_client = leaf(dir, "other-client", client_params()?, &other_issuer)?;
    Ok(Pki {
        ca,
        server,
        expired,
        client,
        other_ca,
        other_client,
    })
}
