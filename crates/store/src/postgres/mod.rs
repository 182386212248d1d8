//! The PostgreSQL backend, for several breakglass nodes on one database the operator already
//! runs (with its own replication and backups).
//!
//! The aggregate modules and the group-commit writer are `shared/` (compiled here with
//! PostgreSQL's types); this module connects, names the types and holds what only PostgreSQL
//! says (`dialect`): every appending transaction locks the one `audit_head` row (`FOR UPDATE`)
//! before reading it and moves it in the same transaction, so the chain has one head whichever
//! node appends (the audit `seq` primary key is the backstop); migrations run under a
//! transaction-scoped advisory lock; each connection bounds how long a paused or cut-off node
//! can hold others up (`lock_timeout`, `idle_in_transaction_session_timeout`,
//! `statement_timeout`).

#[path = "../shared/alerts.rs"]
mod alerts;
#[path = "../shared/audit.rs"]
mod audit;
#[path = "../shared/common.rs"]
mod common;
#[path = "../shared/credentials.rs"]
mod credentials;
#[path = "../shared/drills.rs"]
mod drills;
#[path = "../shared/glass_cases.rs"]
mod glass_cases;
#[path = "../shared/grants.rs"]
mod grants;
#[path = "../shared/leases.rs"]
mod leases;
#[path = "../shared/passkeys.rs"]
mod passkeys;
#[path = "../shared/recordings.rs"]
mod recordings;
#[path = "../shared/reviews.rs"]
mod reviews;
#[path = "../shared/schema.rs"]
mod schema;
#[path = "../shared/secrets.rs"]
mod secrets;
#[path = "../shared/streams.rs"]
mod streams;
#[path = "../shared/users.rs"]
mod users;
#[path = "../shared/writer.rs"]
mod writer;

use crate::Result;
use common::Job;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The driver's types, as the shared modules name them.
mod db {
    pub type Db = sqlx::Postgres;
    pub type Conn = sqlx::PgConnection;
    pub type DbRow = sqlx::postgres::PgRow;
    pub type Pool = sqlx::PgPool;
    pub type Backend = super::PgStore;
}

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_alerts.sql")),
    (
        3,
        include_str!("../../migrations/postgres/0003_reviews.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_secrets.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_credentials.sql"),
    ),
    (
        6,
        include_str!("../../migrations/postgres/0006_credential_lookups.sql"),
    ),
    (
        7,
        include_str!("../../migrations/postgres/0007_credential_pickup.sql"),
    ),
    (
        8,
        include_str!("../../migrations/postgres/0008_grants_by_resource.sql"),
    ),
    (
        9,
        include_str!("../../migrations/postgres/0009_optimistic_versions.sql"),
    ),
    (
        10,
        include_str!("../../migrations/postgres/0010_recordings.sql"),
    ),
    (
        11,
        include_str!("../../migrations/postgres/0011_stream_cursors.sql"),
    ),
    (
        12,
        include_str!("../../migrations/postgres/0012_grants_user_resource.sql"),
    ),
    (
        14,
        include_str!("../../migrations/postgres/0014_passkeys.sql"),
    ),
    (
        13,
        include_str!("../../migrations/postgres/0013_drills.sql"),
    ),
    (
        15,
        include_str!("../../migrations/postgres/0015_glass_cases.sql"),
    ),
    (
        17,
        include_str!("../../migrations/postgres/0017_node_coordination.sql"),
    ),
    (
        18,
        include_str!("../../migrations/postgres/0018_people_drills.sql"),
    ),
    (
        19,
        include_str!("../../migrations/postgres/0019_glass_case_roles.sql"),
    ),
];

/// Most connections one node opens.
const MAX_CONNECTIONS: u32 = 8;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    writer: tokio::sync::mpsc::Sender<Job>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db?sslmode=…`) and applies the
    /// migrations the database lacks (refusing a schema newer than this binary knows).
    pub async fn open(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?
            .application_name("breakglass")
            .options([
                // A node that stops (SIGSTOP, a cut network) inside a transaction holds the
                // audit head, and every node's commits wait on it: the database ends that
                // transaction after 750 ms (its batch fails, its callers are told 503 and
                // retry). Our only transactions (the writer's batches, migrations) never wait
                // on anything but the database between statements, so 750 ms idle is a frozen
                // node. Fault runs saw expiries stall 10-15 s behind a SIGSTOPped node at 15 s,
                // and up to 2,052 ms at 2 s; the goal is every expiry within 1 s.
                ("idle_in_transaction_session_timeout", "750ms"),
                ("lock_timeout", "10s"),
                ("statement_timeout", "30s"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(writer::writer(pool.clone(), rx));
        schema::migrate(&pool, MIGRATIONS).await?;
        Ok(PgStore { pool, writer: tx })
    }

    /// The underlying pool, for tests that tamper with rows on purpose.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// What only PostgreSQL says.
mod dialect {
    pub const NAME: &str = "postgres";

    /// The database server's clock (ms since the epoch), the same for every node.
    pub const NOW_MS: &str =
        "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)";

    use super::PgStore;
    use super::audit::hash32;
    use super::audit::seq_u64;
    use crate::Result;
    use breakglass_core::audit::{AuditRecord, Head, IndexColumns};
    use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

    /// Any number that is the same on every node: the migration lock's key.
    const MIGRATION_LOCK: i64 = 0x6272_6b67_6c61_7373; // "brkglass"

    pub async fn begin(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
        pool.begin().await
    }

    /// One node migrates at a time; the lock ends with the transaction.
    pub async fn begin_migration(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Locks the head row (other nodes' appends wait here until this transaction ends) and
    /// reads it.
    pub async fn head_for_append(conn: &mut PgConnection) -> Result<Option<Head>> {
        let row = sqlx::query("SELECT seq, chain FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_one(conn)
            .await?;
        let seq: Option<i64> = row.try_get("seq")?;
        let chain: Option<Vec<u8>> = row.try_get("chain")?;
        match (seq, chain) {
            (Some(seq), Some(chain)) => Ok(Some(Head {
                seq: seq_u64(seq)?,
                chain_hash: hash32(chain, "audit head chain hash")?,
            })),
            _ => Ok(None),
        }
    }

    /// Moves the head row to the last appended event (same transaction as the events).
    pub async fn moved_head(conn: &mut PgConnection, head: Head) -> Result<()> {
        sqlx::query("UPDATE audit_head SET seq = $1, chain = $2 WHERE id = 1")
            .bind(super::audit::seq_i64(head.seq)?)
            .bind(&head.chain_hash[..])
            .execute(conn)
            .await?;
        Ok(())
    }

    pub const KIND_COUNTS: &str = "SELECT convert_from(body, 'UTF8')::json->>'kind' AS kind, \
         COUNT(*) AS n FROM audit WHERE (convert_from(body, 'UTF8')::json->>'ts')::BIGINT >= $1 \
         GROUP BY 1 ORDER BY 1";

    pub async fn audit_rows(
        store: &PgStore,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(AuditRecord, IndexColumns)>> {
        super::audit::rows_from(&store.pool, from, limit).await
    }
}
