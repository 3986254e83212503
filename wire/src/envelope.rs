//! The envelope: batch header plus the encoded body, sealed with the body's SHA-256.
//!
//! [`Envelope::seal`] is what the agent calls; [`Envelope::open`] is what the sink
//! calls on untrusted bytes (size-capped, version-checked, hash-verified).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::columnar::Layout;
use crate::quantize::Quantizer;
use crate::{
    codec, columnar, Body, CodecError, MAX_ENVELOPE_BYTES, MIN_SCHEMA_VERSION, SCHEMA_VERSION,
};

/// How a body is laid out when sealed (each is one schema version).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyEncoding {
    /// Schema version 2: one packed CBOR row per window, values exact.
    Packed,
    /// Schema version 4: per-series columns (see [`crate::columnar`]), values
    /// within `relative_error` of the originals, or exact when it is 0;
    /// verdicts in a column of their own, written against their window.
    Columnar { relative_error: f64 },
    /// Schema version 3: as version 4, but verdicts travel as CBOR beside the
    /// columns (for sinks older than version 4).
    ColumnarV3 { relative_error: f64 },
}

impl BodyEncoding {
    /// The columnar encoding with exact values (what [`Envelope::seal`] uses).
    pub const EXACT: BodyEncoding = BodyEncoding::Columnar {
        relative_error: 0.0,
    };

    /// The schema version a body sealed this way carries.
    pub fn version(&self) -> u16 {
        match self {
            BodyEncoding::Packed => 2,
            BodyEncoding::Columnar { .. } => 4,
            BodyEncoding::ColumnarV3 { .. } => 3,
        }
    }

    /// Checks the encoding's parameters: a relative error is 0 or within
    /// [`crate::MIN_RELATIVE_ERROR`, `crate::MAX_RELATIVE_ERROR`].
    pub fn validate(&self) -> Result<(), String> {
        match self {
            BodyEncoding::Packed => Ok(()),
            BodyEncoding::Columnar { relative_error }
            | BodyEncoding::ColumnarV3 { relative_error } => {
                Quantizer::new(*relative_error).map(|_| ()).ok_or_else(|| {
                    format!(
                        "relative error {relative_error} is not 0 (exact) or within [{}, {}]",
                        crate::MIN_RELATIVE_ERROR,
                        crate::MAX_RELATIVE_ERROR
                    )
                })
            }
        }
    }

    fn encode(&self, body: &Body) -> Vec<u8> {
        match self {
            BodyEncoding::Packed => codec::encode_packed(body),
            BodyEncoding::Columnar { relative_error } => {
                columnar::encode(body, quantizer(*relative_error), Layout::VerdictColumn)
            }
            BodyEncoding::ColumnarV3 { relative_error } => {
                columnar::encode(body, quantizer(*relative_error), Layout::VerdictsInExtras)
            }
        }
    }
}

fn quantizer(relative_error: f64) -> Quantizer {
    Quantizer::new(relative_error).expect("a validated relative error (see BodyEncoding::validate)")
}

/// The idempotency key of a batch: the sink stores each key at most once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchKey {
    pub gateway: String,
    /// Identifies one life of the gateway's outbox; a wiped outbox starts a new epoch.
    pub epoch: u64,
    /// Strictly increasing within an epoch, starting at 1.
    pub seq: u64,
}

/// One uplink batch as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    pub gateway: String,
    pub epoch: u64,
    pub seq: u64,
    /// Gateway wall-clock time when the batch was cut (ms since epoch; informational).
    pub created_ms: i64,
    #[serde(with = "serde_bytes")]
    pub body_sha256: Vec<u8>,
    /// The encoded [`Body`] (named CBOR in version 1, packed in 2, columnar in
    /// 3 and 4), exactly the bytes that were hashed.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Why received bytes are not an acceptable envelope.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("envelope: {0}")]
    Codec(#[from] CodecError),
    #[error("unsupported schema version {0} (this build opens {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION}; upgrade the sink before its gateways)")]
    Version(u16),
    #[error("body hash does not match body")]
    HashMismatch,
    #[error("body: {0}")]
    Body(CodecError),
}

impl Envelope {
    /// Encodes `body` in columns with exact values (schema version 4) and wraps
    /// it with its hash and the given key: the body opens to exactly `body`.
    pub fn seal(key: &BatchKey, created_ms: i64, body: &Body) -> Envelope {
        Envelope::seal_as(key, created_ms, body, BodyEncoding::EXACT)
    }

    /// Encodes `body` as `encoding` says and wraps it with its hash and the
    /// given key. Panics on a relative error [`BodyEncoding::validate`] refuses.
    pub fn seal_as(
        key: &BatchKey,
        created_ms: i64,
        body: &Body,
        encoding: BodyEncoding,
    ) -> Envelope {
        let body = encoding.encode(body);
        Envelope {
            version: encoding.version(),
            gateway: key.gateway.clone(),
            epoch: key.epoch,
            seq: key.seq,
            created_ms,
            body_sha256: Sha256::digest(&body).to_vec(),
            body,
        }
    }

    /// Encodes the whole envelope for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and verifies untrusted bytes: size cap, version, body hash, body.
    pub fn open(bytes: &[u8]) -> Result<(Envelope, Body), OpenError> {
        let env: Envelope = codec::decode_capped(bytes, MAX_ENVELOPE_BYTES)?;
        if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&env.version) {
            return Err(OpenError::Version(env.version));
        }
        if Sha256::digest(&env.body).as_slice() != env.body_sha256.as_slice() {
            return Err(OpenError::HashMismatch);
        }
        let body = if env.version >= 3 {
            columnar::decode(&env.body)
        } else {
            codec::decode_capped(&env.body, MAX_ENVELOPE_BYTES)
        }
        .map_err(OpenError::Body)?;
        Ok((env, body))
    }

    /// The idempotency key of this envelope.
    pub fn key(&self) -> BatchKey {
        BatchKey {
            gateway: self.gateway.clone(),
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Hex of the body hash, for logs and conflict reports.
    pub fn body_hash_hex(&self) -> String {
        hex::encode(&self.body_sha256)
    }
}
