//! The embedded SQLite backend: WAL journal, `synchronous=FULL` (every commit is durable).
//!
//! The aggregate modules and the group-commit writer are `shared/` (compiled here with SQLite's
//! types); this module opens the file, names the types and holds what only SQLite says
//! (`dialect`): `BEGIN IMMEDIATE` (one writer; the audit head needs no lock), `json_extract`,
//! and bulk audit reads on a plain read-only connection.

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
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The driver's types, as the shared modules name them.
mod db {
    pub type Db = sqlx::Sqlite;
    pub type Conn = sqlx::SqliteConnection;
    pub type DbRow = sqlx::sqlite::SqliteRow;
    pub type Pool = sqlx::SqlitePool;
    pub type Backend = super::SqliteStore;
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: tokio::sync::mpsc::Sender<Job>,
    /// The database file (None for in-memory stores); bulk audit reads open it directly.
    path: Option<std::path::PathBuf>,
}

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_alerts.sql")),
    (3, include_str!("../../migrations/sqlite/0003_reviews.sql")),
    (4, include_str!("../../migrations/sqlite/0004_secrets.sql")),
    (
        5,
        include_str!("../../migrations/sqlite/0005_credentials.sql"),
    ),
    (
        6,
        include_str!("../../migrations/sqlite/0006_credential_lookups.sql"),
    ),
    (
        7,
        include_str!("../../migrations/sqlite/0007_credential_pickup.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_grants_by_resource.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_optimistic_versions.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_recordings.sql"),
    ),
    (
        11,
        include_str!("../../migrations/sqlite/0011_stream_cursors.sql"),
    ),
    (
        12,
        include_str!("../../migrations/sqlite/0012_grants_user_resource.sql"),
    ),
    (
        14,
        include_str!("../../migrations/sqlite/0014_passkeys.sql"),
    ),
    (13, include_str!("../../migrations/sqlite/0013_drills.sql")),
    (
        15,
        include_str!("../../migrations/sqlite/0015_glass_cases.sql"),
    ),
    (
        17,
        include_str!("../../migrations/sqlite/0017_node_coordination.sql"),
    ),
    (
        18,
        include_str!("../../migrations/sqlite/0018_people_drills.sql"),
    ),
    (
        19,
        include_str!("../../migrations/sqlite/0019_glass_case_roles.sql"),
    ),
];

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations. The file
    /// is created with mode 0600 (an existing one, and its `-wal`/`-shm`, lose any group and
    /// other permissions) before SQLite opens it: SQLite gives the files it creates beside the
    /// database the database file's mode, whatever the directory's is.
    pub async fn open(path: &Path) -> Result<Self> {
        private_db_files(path).map_err(sqlx::Error::Io)?;
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Pages come from memory rather than a pread copy per page: a 16 MiB page cache per
            // connection (the default is 2 MB, which the audit and grant indexes outgrow) and
            // the file mapped for reads (SQLite still writes through the WAL with its own
            // fsyncs). Activations/s: 259 → 428 on the same loaded machine (BENCHMARKS.md).
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "268435456");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        Self::with_pool(pool, Some(path.to_path_buf())).await
    }

    async fn with_pool(pool: SqlitePool, path: Option<std::path::PathBuf>) -> Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(writer::writer(pool.clone(), rx));
        let store = SqliteStore {
            pool,
            writer: tx,
            path,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// An in-memory database (tests).
    pub async fn memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        Self::with_pool(pool, None).await
    }

    /// The underlying pool, for tests that tamper with rows on purpose.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn migrate(&self) -> Result<()> {
        schema::migrate(&self.pool, MIGRATIONS).await
    }
}

/// See [`SqliteStore::open`].
fn private_db_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut sidecars = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        sidecars.push(p.into());
    }
    for p in sidecars {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & 0o077 != 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

/// What only SQLite says.
mod dialect {
    pub const NAME: &str = "sqlite";

    /// This machine's clock, as SQLite reads it (ms since the epoch).
    pub const NOW_MS: &str =
        "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

    use super::SqliteStore;
    use super::audit::{hash32, seq_i64, seq_u64};
    use crate::audit::sql;
    use crate::{Result, StoreError};
    use breakglass_core::audit::{AuditRecord, Head, IndexColumns};
    use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
    use std::path::Path;
    use std::time::Duration;

    /// A write transaction: `BEGIN IMMEDIATE` takes SQLite's one write lock up front.
    pub async fn begin(pool: &SqlitePool) -> sqlx::Result<Transaction<'static, Sqlite>> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    pub async fn begin_migration(pool: &SqlitePool) -> sqlx::Result<Transaction<'static, Sqlite>> {
        begin(pool).await
    }

    /// The audit head to append after; the write lock already excludes other writers.
    pub async fn head_for_append(conn: &mut SqliteConnection) -> Result<Option<Head>> {
        super::audit::head(conn).await
    }

    /// Nothing to keep beside the audit rows: the head is the last row.
    pub async fn moved_head(_conn: &mut SqliteConnection, _head: Head) -> Result<()> {
        Ok(())
    }

    pub const KIND_COUNTS: &str = "SELECT json_extract(CAST(body AS TEXT), '$.kind') AS kind, \
         COUNT(*) AS n FROM audit WHERE json_extract(CAST(body AS TEXT), '$.ts') >= $1 \
         GROUP BY 1 ORDER BY 1";

    /// Bulk reads (verification, export, checkpoints) bypass the async driver: a plain
    /// read-only connection on a blocking thread is several times faster per row.
    pub async fn audit_rows(
        store: &SqliteStore,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(AuditRecord, IndexColumns)>> {
        let Some(path) = store.path.clone() else {
            return super::audit::rows_from(&store.pool, from, limit).await;
        };
        tokio::task::spawn_blocking(move || read_audit(&path, from, limit))
            .await
            .map_err(|e| StoreError::CommitFailed(format!("reader task: {e}")))?
    }

    /// [`sql::ROWS`] on a plain read-only rusqlite connection (see [`AuditLog::audit_rows`]).
    fn read_audit(path: &Path, from: u64, limit: u32) -> Result<Vec<(AuditRecord, IndexColumns)>> {
        use rusqlite::{Connection, OpenFlags};
        let db = |e: rusqlite::Error| StoreError::CommitFailed(format!("audit read: {e}"));
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        let mut stmt = conn.prepare(sql::ROWS).map_err(db)?;
        let mut rows = stmt.query((seq_i64(from)?, i64::from(limit))).map_err(db)?;
        let mut out = Vec::with_capacity(limit.min(100_000) as usize);
        while let Some(r) = rows.next().map_err(db)? {
            out.push((
                AuditRecord {
                    seq: seq_u64(r.get(0).map_err(db)?)?,
                    body: r.get(1).map_err(db)?,
                    leaf_hash: hash32(r.get(2).map_err(db)?, "leaf hash")?,
                    chain_hash: hash32(r.get(3).map_err(db)?, "chain hash")?,
                },
                IndexColumns {
                    ts_ms: r.get(4).map_err(db)?,
                    kind: r.get(5).map_err(db)?,
                    grant_id: r.get(6).map_err(db)?,
                },
            ));
        }
        Ok(out)
    }
}
