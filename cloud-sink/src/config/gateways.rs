//! The `[[gateways]]` section: who may post batches, and the credentials each
//! gateway proves itself with (token hashes, client-certificate fingerprints).
//!
//! Describes and checks the keys only; [`crate::auth`] turns them into the
//! lookup tables used per request. A key may hold one hash or a list, so a
//! credential can be rotated without an outage (old and new valid together).

use std::collections::HashSet;

use serde::Deserialize;

use super::ConfigProblem;

/// Largest accepted gateway id length.
const MAX_GATEWAY_ID_LEN: usize = 64;

/// One gateway allowed to post batches.
///
/// ```toml
/// [[gateways]]
/// id = "gw-7"
/// token_sha256 = ["<old hash>", "<new hash>"]   # or one string
/// cert_sha256 = "<SHA-256 of its client certificate (DER)>"   # optional, with [tls] client_ca_file
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The gateway id; must equal the `gateway` field of every envelope it sends.
    pub id: String,
    /// Hex SHA-256 of each valid bearer token (the tokens themselves are never stored).
    #[serde(default)]
    pub token_sha256: Hashes,
    /// Hex SHA-256 of each client certificate (DER) that identifies this
    /// gateway on an mTLS connection, as `openssl x509 -outform der | sha256sum` prints it.
    #[serde(default)]
    pub cert_sha256: Hashes,
}

/// One hex SHA-256 or a list of them (`"…"` or `["…", "…"]` in TOML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct Hashes(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Hashes {
    fn from(v: OneOrMany) -> Hashes {
        match v {
            OneOrMany::One(s) => Hashes(vec![s]),
            OneOrMany::Many(list) => Hashes(list),
        }
    }
}

impl From<&str> for Hashes {
    fn from(s: &str) -> Hashes {
        Hashes(vec![s.to_owned()])
    }
}

impl From<Vec<String>> for Hashes {
    fn from(list: Vec<String>) -> Hashes {
        Hashes(list)
    }
}

impl From<String> for Hashes {
    fn from(s: String) -> Hashes {
        Hashes(vec![s])
    }
}

impl Hashes {
    /// The hashes that decode; malformed ones are reported by validation.
    pub fn decoded(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.0.iter().filter_map(|h| parse_sha256_hex(h))
    }
}

/// True when `id` is 1-64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_gateway_id(id: &str) -> bool {
    (1..=MAX_GATEWAY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes a 64-character hex SHA-256 (either case); `None` if malformed.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Checks every gateway entry: ids valid and unique, every hash well-formed,
/// at least one credential each, no credential shared by two gateways.
pub(super) fn check(gateways: &[GatewayConfig], problems: &mut Vec<ConfigProblem>) {
    if gateways.is_empty() {
        problems.push(ConfigProblem::new(
            "gateways",
            "at least one [[gateways]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut credentials = HashSet::new();
    for (i, gw) in gateways.iter().enumerate() {
        let id_path = format!("gateways[{i}].id");
        if gw.id.is_empty() {
            problems.push(ConfigProblem::new(&id_path, "must not be empty"));
        } else if !is_valid_gateway_id(&gw.id) {
            problems.push(ConfigProblem::new(
                &id_path,
                format!(
                    "{:?} must be 1-{MAX_GATEWAY_ID_LEN} characters of A-Z a-z 0-9 . _ -",
                    gw.id
                ),
            ));
        }
        if !gw.id.is_empty() && !seen.insert(gw.id.as_str()) {
            problems.push(ConfigProblem::new(
                &id_path,
                format!("duplicate gateway id {:?}", gw.id),
            ));
        }
        if gw.token_sha256.0.is_empty() && gw.cert_sha256.0.is_empty() {
            problems.push(ConfigProblem::new(
                format!("gateways[{i}].token_sha256"),
                "a gateway needs a token_sha256 (or a cert_sha256 with [tls] client_ca_file)",
            ));
        }
        for (key, hashes, what) in [
            ("token_sha256", &gw.token_sha256, "token"),
            ("cert_sha256", &gw.cert_sha256, "client certificate (DER)"),
        ] {
            for hash in &hashes.0 {
                match parse_sha256_hex(hash) {
                    None => problems.push(ConfigProblem::new(
                        format!("gateways[{i}].{key}"),
                        format!("expected 64 hex characters (the SHA-256 of the {what})"),
                    )),
                    Some(h) if !credentials.insert((key, h)) => problems.push(ConfigProblem::new(
                        format!("gateways[{i}].{key}"),
                        "the same hash is listed twice (one credential, one gateway)",
                    )),
                    Some(_) => {}
                }
            }
        }
    }
}
