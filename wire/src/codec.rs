//! CBOR encode/decode with a size cap applied before the decoder sees a byte.
//!
//! Only this module calls `serde_cbor`. It knows nothing about batches.

use serde::{de::DeserializeOwned, Serialize};

/// Why bytes could not be turned into a value (or back).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input was larger than the caller's cap; nothing was decoded.
    #[error("input is {len} bytes, over the {cap}-byte cap")]
    TooLarge { len: usize, cap: usize },
    /// The bytes were not valid CBOR for the expected type.
    #[error("malformed CBOR: {0}")]
    Malformed(String),
}

/// Encodes `value` as CBOR. Infallible for the plain data types of this crate.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_cbor::to_vec(value).expect("plain data types always encode to CBOR")
}

/// Encodes `value` as packed CBOR: struct fields keyed by their index instead of
/// their name (about 40% smaller for window summaries). [`decode_capped`] reads
/// both forms, so a packed and a named encoding decode to the same value.
pub fn encode_packed<T: Serialize>(value: &T) -> Vec<u8> {
    serde_cbor::ser::to_vec_packed(value).expect("plain data types always encode to CBOR")
}

/// Decodes `bytes` as CBOR into `T` (named or packed struct keys), refusing
/// inputs longer than `cap` bytes.
pub fn decode_capped<T: DeserializeOwned>(bytes: &[u8], cap: usize) -> Result<T, CodecError> {
    if bytes.len() > cap {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            cap,
        });
    }
    serde_cbor::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}
