//! Per-gateway bearer-token authentication: maps an `Authorization` header to
//! the gateway id whose configured SHA-256 matches the token.
//!
//! It only says *who* is calling; checking that the caller may post a given
//! envelope (token gateway == envelope gateway) is the HTTP layer's job.

use sha2::{Digest, Sha256};

use crate::config::{parse_sha256_hex, GatewayConfig};

/// The configured gateways' token hashes. Tokens themselves are never held.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], String)>,
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
}

impl TokenTable {
    /// Builds the table from validated gateway entries; entries whose hash is
    /// malformed are skipped (validation reports them).
    pub fn new(gateways: &[GatewayConfig]) -> TokenTable {
        let entries = gateways
            .iter()
            .filter_map(|g| parse_sha256_hex(&g.token_sha256).map(|h| (h, g.id.clone())))
            .collect();
        TokenTable { entries }
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
        let mut found = None;
        for (hash, id) in &self.entries {
            if constant_time_eq(hash, &digest) && found.is_none() {
                found = Some(id.as_str());
            }
        }
        found
    }
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
                token_sha256: token_sha256_hex("token-a"),
            },
            GatewayConfig {
                id: "gw-b".into(),
                token_sha256: token_sha256_hex("token-b").to_uppercase(),
            },
        ])
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
