//! The PostgreSQL store: the same contract as the embedded store
//! (`put_batch` → Stored / Duplicate / Conflict, each batch stored once) for
//! one or many sink replicas sharing one database.
//!
//! Exactly-once across replicas rests on one transaction per batch: the
//! `batches` row is inserted with `ON CONFLICT DO NOTHING`, and only the
//! transaction that inserted it writes the windows, escalations and gateway
//! totals. A concurrent insert of the same key waits for the first one's
//! commit or rollback, so it then sees the stored hash (duplicate or conflict)
//! or stores the batch itself. Answers come only after COMMIT, with
//! `synchronous_commit = on` forced per connection. Reads are in `query.rs`,
//! row layouts in `rows.rs`, schema set-up in `migrate.rs`, TLS to the server
//! in `tls.rs`; no HTTP here.

mod migrate;
mod query;
mod rows;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use wire::{Body, Envelope};

use crate::config::PgSettings;
use crate::store::{PutOutcome, TeacherJudgement};

pub use migrate::MIGRATIONS;

/// Why a PostgreSQL operation failed. All but `Unstorable`, `TooNew` and
/// `Corrupt` are worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Start-up could not reach the database. `hint` says what a TLS or
    /// certificate failure most likely means.
    #[error(
        "cannot connect to PostgreSQL at {url} (schema {schema}, {transport}) after {attempts} attempt(s){}",
        .hint.map(|h| format!(": {h}")).unwrap_or_default()
    )]
    Connect {
        url: String,
        schema: String,
        /// `TLS verify-full`, `TLS verify-ca` or `no TLS`.
        transport: String,
        attempts: u32,
        hint: Option<&'static str>,
        #[source]
        source: tokio_postgres::Error,
    },
    /// `[store.tls]` could not be turned into a TLS client (a file, the CA,
    /// the client key pair).
    #[error(transparent)]
    Tls(#[from] tls::PgTlsError),
    /// No connection could be had from the pool (database down, timeout).
    #[error("PostgreSQL connection pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The pool could not be built.
    #[error("PostgreSQL connection pool set-up")]
    Build(#[from] deadpool_postgres::BuildError),
    /// A statement failed.
    #[error("PostgreSQL")]
    Db(#[from] tokio_postgres::Error),
    /// A migration failed (rolled back; nothing recorded).
    #[error("schema migration {version} ({name})")]
    Migration {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database holds a schema version this binary does not know.
    #[error("schema {schema} is at version {found}, newer than this cloud-sink knows ({known}); upgrade the sink")]
    TooNew {
        schema: String,
        found: i32,
        known: i32,
    },
    /// The batch holds a value PostgreSQL cannot keep (a NUL character in text).
    #[error("batch cannot be stored in PostgreSQL: {0}")]
    Unstorable(String),
    /// A stored row does not fit the record it should be.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A pool of connections to one database schema. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    schema: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// How long a request waits for a pooled connection or a new one.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest backoff between start-up connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

impl PgStore {
    /// Connects (retrying with backoff), over TLS with `[store.tls]`, applies
    /// pending migrations under an advisory lock and builds the pool. The
    /// error names the redacted URL and, for TLS failures, the likely cause.
    pub async fn connect(settings: &PgSettings) -> Result<PgStore, PgError> {
        match &settings.tls {
            None => Self::connect_with(settings, NoTls, "no TLS".into()).await,
            Some(tls) => {
                let client = tls::client_config(tls)?;
                let transport = format!("TLS {}", tls.mode.as_str());
                Self::connect_with(settings, MakeRustlsConnect::new(client), transport).await
            }
        }
    }

    async fn connect_with<T>(
        settings: &PgSettings,
        connector: T,
        transport: String,
    ) -> Result<PgStore, PgError>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + Sync + 'static,
        T::TlsConnect: Send + Sync,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let mut config = settings.config.clone();
        if settings.tls.is_some() {
            // Never fall back to plain text (the driver's default is "prefer").
            config.ssl_mode(SslMode::Require);
        }
        // Every session: our schema, durable commits, and bounds so that a
        // stuck statement or a sink that vanished mid-transaction cannot hold
        // a batch key's lock (and so its retries) for long.
        config.options(format!(
            "-c search_path={} -c synchronous_commit=on -c statement_timeout=30s \
             -c idle_in_transaction_session_timeout=60s",
            settings.schema
        ));
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("cloud-sink");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }

        let mut backoff = settings.first_backoff;
        let mut attempt = 1;
        let (mut client, connection) = loop {
            match config.connect(connector.clone()).await {
                Ok(pair) => break pair,
                Err(source) if attempt >= settings.connect_attempts => {
                    return Err(PgError::Connect {
                        url: settings.display.clone(),
                        schema: settings.schema.clone(),
                        transport,
                        attempts: attempt,
                        hint: tls::explain(&source),
                        source,
                    });
                }
                Err(e) => {
                    tracing::warn!(url = %settings.display, attempt, %transport,
                        hint = tls::explain(&e).unwrap_or(""), error = %crate::http::error_chain(&e),
                        "PostgreSQL not reachable; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        };
        let driver = tokio::spawn(connection);
        let migrated = migrate::run(&mut client, &settings.schema).await;
        drop(client);
        let _ = driver.await;
        migrated?;

        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()?;
        Ok(PgStore {
            pool,
            schema: settings.schema.clone(),
        })
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Stores a verified batch once; same contract as
    /// `EmbeddedStore::put_batch` (see the module docs for how).
    pub async fn put_batch(
        &self,
        env: &Envelope,
        body: &Body,
        teacher: &[Vec<TeacherJudgement>],
        received_ms: i64,
    ) -> Result<PutOutcome, PgError> {
        rows::check_storable(env, body).map_err(PgError::Unstorable)?;
        let replaced = rows::without_nul(body);
        if replaced.is_some() {
            tracing::warn!(
                gateway = %env.gateway,
                seq = env.seq,
                "batch text holds NUL characters PostgreSQL cannot store: stored with U+FFFD in their place"
            );
        }
        let body = replaced.as_ref().unwrap_or(body);
        let hash = env.body_hash_hex();
        let (epoch, seq) = (rows::to_i64(env.epoch), rows::to_i64(env.seq));
        let windows = rows::to_i64(body.windows.len() as u64);

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare_cached(rows::INSERT_BATCH).await?;
        let inserted = tx
            .execute(
                &insert,
                &[
                    &env.gateway,
                    &epoch,
                    &seq,
                    &hash,
                    &env.created_ms,
                    &received_ms,
                    &windows,
                ],
            )
            .await?;
        if inserted == 0 {
            let stored: Option<String> = tx
                .query_opt(
                    "SELECT body_sha256 FROM batches WHERE gateway = $1 AND epoch = $2 AND seq = $3",
                    &[&env.gateway, &epoch, &seq],
                )
                .await?
                .map(|row| row.get(0));
            tx.rollback().await?;
            return match stored {
                Some(stored) if stored == hash => Ok(PutOutcome::Duplicate),
                Some(stored_hash) => Ok(PutOutcome::Conflict { stored_hash }),
                None => Err(PgError::Corrupt(format!(
                    "batch {}/{}/{} neither inserted nor found",
                    env.gateway, env.epoch, env.seq
                ))),
            };
        }

        let columns = rows::WindowColumns::of(env, body);
        let insert_windows = tx.prepare_cached(rows::INSERT_WINDOWS).await?;
        let upsert_gateway = tx.prepare_cached(rows::UPSERT_GATEWAY).await?;
        let counters = serde_json::to_value(&body.counters)
            .map_err(|e| PgError::Unstorable(format!("counters: {e}")))?;
        let gauges = serde_json::to_value(&body.gauges)
            .map_err(|e| PgError::Unstorable(format!("gauges: {e}")))?;
        let window_params = columns.params();
        let gateway_params: [&(dyn ToSql + Sync); 7] = [
            &env.gateway,
            &windows,
            &received_ms,
            &epoch,
            &seq,
            &counters,
            &gauges,
        ];
        let escalations = rows::escalation_rows(env, body, teacher);
        let insert_escalation = if escalations.is_empty() {
            None
        } else {
            Some(tx.prepare_cached(rows::INSERT_ESCALATION).await?)
        };
        let escalations_written = async {
            if let Some(insert) = &insert_escalation {
                for e in &escalations {
                    tx.execute(insert, &e.params()).await?;
                }
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        // Polled together, so the statements are pipelined on the one
        // connection (sent without waiting for each answer; run in order).
        tokio::try_join!(
            tx.execute(&insert_windows, &window_params),
            tx.execute(&upsert_gateway, &gateway_params),
            escalations_written,
        )?;
        tx.commit().await?;
        Ok(PutOutcome::Stored)
    }

    /// Closes the pool (in-flight connections finish their work first).
    pub fn close(&self) {
        self.pool.close();
    }
}
