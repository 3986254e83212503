//! Per-gateway authentication: maps an `Authorization` header to the gateway
//! whose configured SHA-256s include the token's, and an mTLS client
//! certificate to the gateway whose `cert_sha256` names it.
//!
//! A gateway may list several token hashes (rotation: old and new valid at
//! once). It only says *who* is calling, from credentials alone; checking that
//! the caller may post a given envelope (caller == envelope gateway) is the
//! HTTP layer's job.

use sha2::{Digest, Sha256};

use crate::config::GatewayConfig;

/// The configured gateways' token hashes and certificate fingerprints.
/// Tokens themselves are never held.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], String)>,
    certs: Vec<([u8; 32], String)>,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not of the form `Bearer <token>`.
    #[error("missing bearer token (expected `Authorization: Bearer <token>`)")]
    Missing,
    /// A token was given but matches no configured gateway.
    #[error("unknown bearer token")]
    Unknown,
    /// The client certificate and the token name different gateways.
    #[error("client certificate and bearer token belong to different gateways")]
    Disagree,
}

impl TokenTable {
    /// Builds the table from validated gateway entries; entries whose hash is
    /// malformed are skipped (validation reports them).
    pub fn new(gateways: &[GatewayConfig]) -> TokenTable {
        let entries = gateways
            .iter()
            .flat_map(|g| g.token_sha256.decoded().map(|h| (h, g.id.clone())))
            .collect();
        let certs = gateways
            .iter()
            .flat_map(|g| g.cert_sha256.decoded().map(|h| (h, g.id.clone())))
            .collect();
        TokenTable { entries, certs }
    }

    /// The caller of a request: the gateway its client certificate (DER of the
    /// leaf, on an mTLS connection) is pinned to, if any, else its token's.
    /// A pinned certificate needs no token; a token sent with it must agree.
    pub fn authenticate_request(
        &self,
        cert: Option<&[u8]>,
        header: Option<&str>,
    ) -> Result<&str, AuthError> {
        let by_cert = cert.and_then(|der| {
            let digest: [u8; 32] = Sha256::digest(der).into();
            lookup(&self.certs, &digest)
        });
        match (by_cert, header) {
            (Some(id), None) => Ok(id),
            (Some(id), Some(_)) => match self.authenticate(header)? {
                other if other == id => Ok(id),
                _ => Err(AuthError::Disagree),
            },
            (None, _) => self.authenticate(header),
        }
    }

    /// Authenticates the raw value of an `Authorization` header (`None` when absent)
    /// and returns the gateway id the token belongs to.
    pub fn authenticate(&self, header: Option<&str>) -> Result<&str, AuthError> {
        let token = header.and_then(bearer_token).ok_or(AuthError::Missing)?;
        self.gateway_for_token(token).ok_or(AuthError::Unknown)
    }

    /// The gateway whose configured hash equals SHA-256(`token`).
    ///
    /// Every entry is compared in constant time and the loop never exits early,
    /// so timing does not reveal how many bytes matched or which entry did.
    pub fn gateway_for_token(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        lookup(&self.entries, &digest)
    }
}

/// The id of the entry whose hash is `digest`, comparing all in constant time.
fn lookup<'a>(entries: &'a [([u8; 32], String)], digest: &[u8; 32]) -> Option<&'a str> {
    let mut found = None;
    for (hash, id) in entries {
        if constant_time_eq(hash, digest) && found.is_none() {
            found = Some(id.as_str());
        }
    }
    found
}

/// Extracts `<token>` from `Bearer <token>` (scheme case-insensitive, per RFC 7235).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares two digests without data-dependent branches (xor-fold).
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hex SHA-256 of a token: what goes into `token_sha256` in the config.
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TokenTable {
        TokenTable::new(&[
            GatewayConfig {
                id: "gw-a".into(),
                token_sha256: token_sha256_hex("token-a").into(),
                cert_sha256: Default::default(),
            },
            GatewayConfig {
                id: "gw-b".into(),
                token_sha256: vec![
                    token_sha256_hex("token-b").to_uppercase(),
                    token_sha256_hex("token-b2"),
                ]
                .into(),
                cert_sha256: token_sha256_hex("cert-b").into(),
            },
        ])
    }

    #[test]
    fn every_listed_hash_is_valid_during_a_rotation() {
        let t = table();
        assert_eq!(t.authenticate(Some("Bearer token-b")), Ok("gw-b"));
        assert_eq!(t.authenticate(Some("Bearer token-b2")), Ok("gw-b"));
        assert_eq!(
            t.authenticate(Some("Bearer token-b3")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn a_pinned_client_certificate_identifies_its_gateway() {
        let t = table();
        let cert = Some(b"cert-b".as_slice());
        assert_eq!(t.authenticate_request(cert, None), Ok("gw-b"));
        assert_eq!(
            t.authenticate_request(cert, Some("Bearer token-b2")),
            Ok("gw-b")
        );
        assert_eq!(
            t.authenticate_request(cert, Some("Bearer token-a")),
            Err(AuthError::Disagree)
        );
        // An unpinned certificate (another gateway's CA-signed cert) needs a token.
        let other = Some(b"cert-x".as_slice());
        assert_eq!(t.authenticate_request(other, None), Err(AuthError::Missing));
        assert_eq!(
            t.authenticate_request(other, Some("Bearer token-a")),
            Ok("gw-a")
        );
    }

    #[test]
    fn known_tokens_map_to_their_gateway() {
        let t = table();
        assert_eq!(t.authenticate(Some("Bearer token-a")), Ok("gw-a"));
        assert_eq!(t.authenticate(Some("bearer token-b")), Ok("gw-b"));
        assert_eq!(t.authenticate(Some("  Bearer   token-b ")), Ok("gw-b"));
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_rejected() {
        let t = table();
        assert_eq!(t.authenticate(None), Err(AuthError::Missing));
        assert_eq!(t.authenticate(Some("token-a")), Err(AuthError::Missing));
        assert_eq!(
            t.authenticate(Some("Basic token-a")),
            Err(AuthError::Missing)
        );
        assert_eq!(t.authenticate(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(
            t.authenticate(Some("Bearer token-c")),
            Err(AuthError::Unknown)
        );
        assert_eq!(t.authenticate(Some("Bearer token-a ")), Ok("gw-a"));
        assert_eq!(
            t.authenticate(Some("Bearer Token-a")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn token_hash_matches_sha256sum() {
        // `printf demo-token | sha256sum`
        assert_eq!(
            token_sha256_hex("demo-token"),
            "7c43ef5ae21d43ce2743f770c68e24def1a43ee2f416d2438410c8af7af2ff2c"
        );
    }

    #[test]
    fn constant_time_eq_detects_any_difference() {
        let a = [7u8; 32];
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!constant_time_eq(&a, &b));
        }
        assert!(constant_time_eq(&a, &a.clone()));
    }
}
