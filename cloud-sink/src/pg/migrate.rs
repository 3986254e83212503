//! Schema migrations: the SQL files under `cloud-sink/migrations/`, embedded
//! in the binary, applied in order at start-up.
//!
//! Each runs in its own transaction and is recorded in `schema_migrations`;
//! an advisory lock serializes replicas starting together, so each migration
//! is applied once. It never drops or rewrites data and never downgrades.

use tokio_postgres::Client;

use super::PgError;

/// A schema change: its version (file number), name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_escalation_exemplar",
        sql: include_str!("../../migrations/0002_escalation_exemplar.sql"),
    },
    Migration {
        version: 3,
        name: "0003_gateway_gauges",
        sql: include_str!("../../migrations/0003_gateway_gauges.sql"),
    },
];

/// Advisory lock class of cloud-sink migrations (the second key is the schema's hash).
const LOCK_CLASS: i32 = 0x0c15_1a4e;

/// Creates `schema` if missing and applies every pending migration in it.
/// The connection's `search_path` must already be `schema`.
pub(super) async fn run(client: &mut Client, schema: &str) -> Result<(), PgError> {
    client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &schema],
        )
        .await?;
    let result = apply(client, schema).await;
    // Unlock even after a failure; the session ends right after anyway.
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&LOCK_CLASS, &schema],
        )
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn apply(client: &mut Client, schema: &str) -> Result<(), PgError> {
    // `schema` is a validated plain identifier (config), so quoting is safe.
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await?;
    let found: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let found = found.unwrap_or(0);
    if found > known {
        return Err(PgError::TooNew {
            schema: schema.to_owned(),
            found,
            known,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let step = async {
            let tx = client.transaction().await?;
            tx.batch_execute(m.sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await?;
            tx.commit().await
        };
        step.await.map_err(|source| PgError::Migration {
            version: m.version,
            name: m.name,
            source,
        })?;
        tracing::info!(
            schema,
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    Ok(())
}
