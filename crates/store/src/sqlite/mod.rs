//! The embedded SQLite backend: WAL journal, `synchronous=FULL` (every commit is durable).
//!
//! Writes go through one writer task that practises group commit: it takes every unit of work
//! waiting, runs each inside its own SAVEPOINT of one `BEGIN IMMEDIATE` transaction (a unit that
//! fails is rolled back alone), commits once — one fsync for the whole batch — and only then
//! answers each caller. Nobody hears "done" before their change and its audit events are durable.

mod alerts;
mod audit;
mod common;
mod credentials;
mod glass_cases;
mod grants;
mod recordings;
mod reviews;
mod secrets;
mod streams;
mod users;

pub use common::SqliteStore;

use crate::{Change, Result, Store, StoreError, sql};
use async_trait::async_trait;
use audit::head;
use breakglass_core::audit::{Head, NewEvent};
use common::Job;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

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
        15,
        include_str!("../../migrations/sqlite/0015_glass_cases.sql"),
    ),
];

/// Most units of work committed together.
const MAX_BATCH: usize = 128;

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
        tokio::spawn(writer(pool.clone(), rx));
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
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

/// Offers `$change` to each aggregate module's `apply` in turn: the module that owns the change
/// applies it (and the caller returns), the others hand it on.
macro_rules! offer {
    ($conn:ident, $change:ident => $($module:ident),+) => {
        $(
            let Some($change) = $module::apply($conn, $change).await? else {
                return Ok(());
            };
        )+
    };
}

/// Applies one change: each aggregate's module takes its own changes.
async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<()> {
    offer!(conn, change => users, grants, alerts, reviews, credentials, secrets, recordings, streams, glass_cases);
    match change {
        Change::PutMeta { key, value } => {
            common::write(conn, sqlx::query(sql::PUT_META).bind(key).bind(value)).await?;
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "no table takes this change: {other:?}"
            )));
        }
    }
    Ok(())
}

/// Applies one unit of work inside the open transaction, after `prev`; returns the new head.
async fn apply_job(
    conn: &mut SqliteConnection,
    changes: Vec<Change>,
    events: &[NewEvent],
    prev: Option<Head>,
) -> Result<Option<Head>> {
    for change in changes {
        apply(&mut *conn, change).await?;
    }
    audit::append(conn, events, prev).await
}

/// The group-commit writer.
async fn writer(pool: SqlitePool, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        run_batch(&pool, jobs).await;
    }
}

async fn run_batch(pool: &SqlitePool, mut jobs: Vec<Job>) {
    let fail_all = |jobs: Vec<Job>, why: String| {
        for j in jobs {
            let _ = j.reply.send(Err(StoreError::CommitFailed(why.clone())));
        }
    };
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return fail_all(jobs, e.to_string()),
    };
    let mut prev = match head(&mut tx).await {
        Ok(h) => h,
        Err(e) => return fail_all(jobs, e.to_string()),
    };
    // One unit alone needs no savepoint: if it fails, the whole transaction is dropped (two
    // round trips to SQLite's thread fewer on every uncontended commit).
    if jobs.len() == 1
        && let Some(job) = jobs.pop()
    {
        let result = apply_job(&mut tx, job.changes, &job.events, prev).await;
        let result = match result {
            Ok(h) => tx
                .commit()
                .await
                .map(|()| h)
                .map_err(|e| StoreError::CommitFailed(e.to_string())),
            Err(e) => Err(e),
        };
        let _ = job.reply.send(result);
        return;
    }
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Err(e) = sqlx::query("SAVEPOINT unit").execute(&mut *tx).await {
            answers.push((job.reply, Err(StoreError::CommitFailed(e.to_string()))));
            continue;
        }
        let result = apply_job(&mut tx, job.changes, &job.events, prev).await;
        let end = if result.is_ok() {
            "RELEASE unit"
        } else {
            "ROLLBACK TO unit"
        };
        let ended = sqlx::query(end).execute(&mut *tx).await;
        if result.is_err() && ended.is_ok() {
            let _ = sqlx::query("RELEASE unit").execute(&mut *tx).await;
        }
        match (result, ended) {
            (Ok(h), Ok(_)) => {
                prev = h;
                answers.push((job.reply, Ok(h)));
            }
            (Err(e), _) => answers.push((job.reply, Err(e))),
            (Ok(_), Err(e)) => {
                // The transaction is in an unknown state: give up on the whole batch.
                let why = e.to_string();
                drop(tx);
                for (reply, _) in answers {
                    let _ = reply.send(Err(StoreError::CommitFailed(why.clone())));
                }
                let _ = job.reply.send(Err(StoreError::CommitFailed(why)));
                return;
            }
        }
    }
    match tx.commit().await {
        Ok(()) => {
            for (reply, r) in answers {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            let why = e.to_string();
            for (reply, r) in answers {
                // Units that failed on their own keep their own error.
                let _ = reply.send(match r {
                    Ok(_) => Err(StoreError::CommitFailed(why.clone())),
                    Err(e) => Err(e),
                });
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, changes: Vec<Change>, events: Vec<NewEvent>) -> Result<Option<Head>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(Job {
                changes,
                events,
                reply,
            })
            .await
            .map_err(|_| StoreError::CommitFailed("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::CommitFailed("the writer has stopped".into()))?
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(sql::META)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }
}
