//! The uplink's transport encoding: sealed envelopes travel gzip-compressed
//! (`Content-Encoding: gzip`), and the sink inflates them under a byte cap.
//!
//! Compression is outside the envelope: the sealed bytes, their hash and the
//! outbox are unchanged, so a retry of the same batch is the same envelope
//! whatever the transport did. Inflating never produces more than the cap
//! (a small gzip bomb is refused, not expanded).

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// The `Content-Encoding` value for gzip.
pub const GZIP: &str = "gzip";

/// Why an uploaded body could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    #[error("inflated body exceeds the {cap}-byte cap")]
    TooLarge { cap: usize },
    #[error("not valid gzip: {0}")]
    Corrupt(#[from] std::io::Error),
}

/// `bytes` gzip-compressed (default level: small batches take well under a millisecond).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::default(),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("writing to a Vec cannot fail")
}

/// Inflates `bytes`, refusing to produce more than `cap` bytes.
pub fn gunzip_capped(bytes: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    GzDecoder::new(bytes).take(limit).read_to_end(&mut out)?;
    if out.len() > cap {
        return Err(InflateError::TooLarge { cap });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_shrinks_repetitive_cbor() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 7).to_be_bytes()).collect();
        let packed = gzip(&data);
        assert!(packed.len() * 10 < data.len(), "{}", packed.len());
        assert_eq!(gunzip_capped(&packed, data.len()).unwrap(), data);
    }

    #[test]
    fn a_bomb_is_refused_at_the_cap_and_garbage_is_an_error() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(
            gunzip_capped(&bomb, 1024 * 1024),
            Err(InflateError::TooLarge { cap: 1_048_576 })
        ));
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 1024),
            Err(InflateError::Corrupt(_))
        ));
        assert!(gunzip_capped(&bomb[..bomb.len() / 2], usize::MAX).is_err());
    }
}
