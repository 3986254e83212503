//! edge-agent: the gateway side of the pipeline, as a library the binary wraps.
//!
//! MQTT in ([`source`]) → [`decode`] → [`windower`] → durable journal and outbox
//! ([`store`], written only by the [`pipeline`] thread) → [`syncer`] → cloud-sink.
//! See ARCHITECTURE.md at the repository root for the invariants.

pub mod agent;
pub mod backoff;
pub mod chunked;
pub mod classify;
pub mod config;
pub mod decode;
pub mod disk_guard;
pub mod disk_sync;
pub mod disk_usage;
pub mod fuzzing;
pub mod health;
pub mod journal_record;
pub mod logmine;
pub mod metrics;
pub mod metrics_http;
pub mod model;
pub mod outbox;
pub mod pipeline;
pub mod rollup;
pub mod sketch;
pub mod source;
pub mod store;
pub mod syncer;
pub mod tls;
pub mod topic;
pub mod window;
pub mod windower;
