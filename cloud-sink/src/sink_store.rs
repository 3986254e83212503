//! [`SinkStore`]: the store the HTTP handlers and `calibrate` use, either the
//! embedded sled store or PostgreSQL, chosen by `[store] backend`.
//!
//! Async on both: embedded calls go through `spawn_blocking` (sled blocks),
//! PostgreSQL calls are native. Semantics are the backends' own, and the
//! same: see `EmbeddedStore::put_batch` and `pg::PgStore::put_batch`. No HTTP
//! knowledge here.

use std::sync::Arc;

use wire::{Body, Envelope};

use crate::agreement;
use crate::config::SinkConfig;
use crate::pg::{PgError, PgStore};
use crate::store::{
    EmbeddedStore, EscalationQuery, GatewayInfo, PutOutcome, SeriesQuery, StoreError,
    StoredEscalation, StoredWindow, TeacherJudgement,
};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkStoreError {
    /// The embedded store failed.
    #[error(transparent)]
    Embedded(#[from] StoreError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// The config could not be turned into a store (e.g. `url_env` unset).
    #[error("{0}")]
    Config(String),
    /// A blocking store task panicked or was cancelled.
    #[error("store task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl SinkStoreError {
    /// True when retrying the same request cannot help (the batch itself
    /// cannot be stored), as opposed to a store outage.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkStoreError::Postgres(PgError::Unstorable(_)))
    }
}

/// The configured store. Cheap to clone.
#[derive(Debug, Clone)]
pub enum SinkStore {
    /// sled in `data_dir`.
    Embedded(Arc<EmbeddedStore>),
    /// A PostgreSQL schema, possibly shared with other sink replicas.
    Postgres(PgStore),
}

impl SinkStore {
    /// Opens the store `config` names: the sled directory, or PostgreSQL
    /// (connect with retries, migrate).
    pub async fn open(config: &SinkConfig) -> Result<SinkStore, SinkStoreError> {
        let pg = config
            .store
            .settings()
            .map_err(|p| SinkStoreError::Config(p.to_string()))?;
        match pg {
            None => {
                let dir = config.data_dir.clone();
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(dir)).await??;
                Ok(SinkStore::Embedded(Arc::new(store)))
            }
            Some(settings) => {
                let store = PgStore::connect(&settings).await?;
                tracing::info!(url = %settings.display, schema = %settings.schema, "PostgreSQL store ready");
                Ok(SinkStore::Postgres(store))
            }
        }
    }

    /// Where the data lives, for logs and errors (never a password).
    pub fn describe(config: &SinkConfig) -> String {
        match config.store.settings() {
            Ok(Some(s)) => format!("postgres {} schema {}", s.display, s.schema),
            Ok(None) => config.data_dir.display().to_string(),
            Err(_) => "postgres (url unavailable)".to_owned(),
        }
    }

    /// Stores a verified batch once (see the backends for the contract).
    pub async fn put_batch(
        &self,
        env: Envelope,
        body: Body,
        teacher: Vec<Vec<TeacherJudgement>>,
        received_ms: i64,
    ) -> Result<PutOutcome, SinkStoreError> {
        match self {
            SinkStore::Embedded(s) => {
                let s = s.clone();
                let put = move || s.put_batch(&env, &body, &teacher, received_ms);
                Ok(tokio::task::spawn_blocking(put).await??)
            }
            SinkStore::Postgres(s) => Ok(s.put_batch(&env, &body, &teacher, received_ms).await?),
        }
    }

    /// Totals of every gateway that has stored at least one batch, by id.
    pub async fn gateways(&self) -> Result<Vec<GatewayInfo>, SinkStoreError> {
        match self {
            SinkStore::Embedded(s) => {
                let s = s.clone();
                Ok(tokio::task::spawn_blocking(move || s.gateways()).await??)
            }
            SinkStore::Postgres(s) => Ok(s.gateways().await?),
        }
    }

    /// Windows matching `q`, in series then time order, at most `q.limit`.
    pub async fn series(&self, q: SeriesQuery) -> Result<Vec<StoredWindow>, SinkStoreError> {
        match self {
            SinkStore::Embedded(s) => {
                let s = s.clone();
                Ok(tokio::task::spawn_blocking(move || s.series(&q)).await??)
            }
            SinkStore::Postgres(s) => Ok(s.series(&q).await?),
        }
    }

    /// Escalations matching `q`, by gateway, device, row time, at most `q.limit`.
    pub async fn escalations(
        &self,
        q: EscalationQuery,
    ) -> Result<Vec<StoredEscalation>, SinkStoreError> {
        match self {
            SinkStore::Embedded(s) => {
                let s = s.clone();
                Ok(tokio::task::spawn_blocking(move || s.escalations(&q)).await??)
            }
            SinkStore::Postgres(s) => Ok(s.escalations(&q).await?),
        }
    }

    /// The agreement rows of every escalation under the filters.
    pub async fn agreement_rows(
        &self,
        gateway: Option<String>,
        device: Option<String>,
        series: Option<String>,
    ) -> Result<Vec<agreement::Row>, SinkStoreError> {
        match self {
            SinkStore::Embedded(s) => {
                let s = s.clone();
                let collect = move || {
                    let mut rows = Vec::new();
                    s.for_each_escalation(gateway.as_deref(), device.as_deref(), |e| {
                        if series.as_deref().is_none_or(|s| s == e.series) {
                            rows.push(agreement::Row::from(&e));
                        }
                    })?;
                    Ok::<_, StoreError>(rows)
                };
                Ok(tokio::task::spawn_blocking(collect).await??)
            }
            SinkStore::Postgres(s) => Ok(s
                .agreement_rows(gateway.as_ref(), device.as_ref(), series.as_ref())
                .await?),
        }
    }

    /// Makes everything written durable and releases the store: flushes sled;
    /// closes the PostgreSQL pool (its commits are already durable).
    pub async fn close(&self) -> Result<(), SinkStoreError> {
        match self {
            SinkStore::Embedded(s) => {
                let s = s.clone();
                Ok(tokio::task::spawn_blocking(move || s.flush()).await??)
            }
            SinkStore::Postgres(s) => {
                s.close();
                Ok(())
            }
        }
    }
}
