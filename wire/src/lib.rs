//! The versioned uplink schema shared by `edge-agent` and `cloud-sink`.
//!
//! A gateway sends [`Envelope`]s: a small header (who, which boot epoch, which
//! sequence number, a SHA-256 of the body) around an opaque CBOR [`Body`] of
//! closed-window summaries and input counters, laid out in per-series columns
//! since schema version 3 (verdicts in a column since 4). Hashing the *encoded* body means
//! the idempotency check at the sink never depends on re-encoding.
//!
//! This crate owns every use of `serde_cbor` (unmaintained, RUSTSEC-2021-0127):
//! nothing else in the workspace touches it, input size is capped before any
//! decoding, and `tests/golden.rs` pins the byte format so a codec swap is safe.
//! It does no I/O.

mod body;
mod codec;
mod columnar;
mod counters;
mod envelope;
pub mod fuzzing;
mod quantize;
pub mod transport;

pub use body::{Body, Escalation, Gauges, LogTemplate, Verdict, WindowSummary};
pub use codec::{decode_capped, encode, encode_packed, CodecError};
pub use columnar::MAX_WINDOWS_PER_BODY;
pub use counters::{Counters, Reason, HEALTH_PREFIX};
pub use envelope::{BatchKey, BodyEncoding, Envelope, OpenError};
pub use quantize::{MAX_RELATIVE_ERROR, MIN_RELATIVE_ERROR};

/// Schema version of the envelopes this build seals. Bump on incompatible change.
///
/// 1: body CBOR with named struct keys. 2: the same body with packed (index) keys,
/// about 40% smaller; the header stays named so any version can read `version`.
/// 3: the body in per-series columns, values exact or rounded to a relative
/// error (see [`BodyEncoding`]). 4: as 3, with each window's verdict in a
/// column of its own, written as what differs from its window (a 1 Hz fleet's
/// uplink 4% smaller, BENCHMARKS.md). A sink that opens 4 still opens 1 to 3.
pub const SCHEMA_VERSION: u16 = 4;

/// Oldest schema version this build still opens (outboxes sealed before an upgrade).
pub const MIN_SCHEMA_VERSION: u16 = 1;

/// Largest encoded envelope either side will accept (checked before decoding).
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024 * 1024;
