//! Test certificates made with rcgen for `pg_tls.rs`: a CA, server
//! certificates (valid, expired, for another name), client certificates
//! (CN = `postgres`) from that CA and from another, as PEM files. Test keys
//! only, written unencrypted; nothing here is kept.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// One certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificates the TLS tests use, under one directory.
#[derive(Debug)]
pub struct Pki {
    /// Signs everything below but `other_client`.
    pub ca: PathBuf,
    /// For 127.0.0.1 and localhost, valid now.
    pub server: CertFiles,
    /// For the same names, expired in 2021.
    pub expired: CertFiles,
    /// For `db.internal` only (not the address the tests connect to).
    pub other_name: CertFiles,
    /// CN = `postgres` (the user the tests connect as), valid now.
    pub client: CertFiles,
    /// An unrelated CA.
    pub other_ca: PathBuf,
    /// CN = `postgres`, signed by `other_ca`.
    pub other_client: CertFiles,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf(
    dir: &Path,
    name: &str,
    mut params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> CertFiles {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    CertFiles {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}.key"), &key.serialize_pem()),
    }
}

fn server_params(names: &[&str], ip: bool) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    if ip {
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
    }
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

fn client_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "postgres");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

impl Pki {
    /// Makes the whole set in `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let ca = write(
            dir,
            "ca.pem",
            &ca_params("pg test CA").self_signed(&ca_key).unwrap().pem(),
        );
        let issuer = Issuer::new(ca_params("pg test CA"), ca_key);
        let mut old = server_params(&["localhost"], true);
        old.not_before = date_time_ymd(2020, 1, 1);
        old.not_after = date_time_ymd(2021, 1, 1);

        let other_key = KeyPair::generate().unwrap();
        let other_ca = write(
            dir,
            "other-ca.pem",
            &ca_params("another CA")
                .self_signed(&other_key)
                .unwrap()
                .pem(),
        );
        let other_issuer = Issuer::new(ca_params("another CA"), other_key);
        Pki {
            server: leaf(dir, "server", server_params(&["localhost"], true), &issuer),
            expired: leaf(dir, "expired", old, &issuer),
            other_name: leaf(
                dir,
                "other-name",
                server_params(&["db.internal"], false),
                &issuer,
            ),
            client: leaf(dir, "client", client_params(), &issuer),
            other_client: leaf(dir, "other-client", client_params(), &other_issuer),
            ca,
            other_ca,
        }
    }
}
