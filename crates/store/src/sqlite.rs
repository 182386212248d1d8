//! The embedded SQLite backend: WAL journal, `synchronous=FULL` (every commit is durable).
//!
//! Writes go through one writer task that practises group commit: it takes every unit of work
//! waiting, runs each inside its own SAVEPOINT of one `BEGIN IMMEDIATE` transaction (a unit that
//! fails is rolled back alone), commits once — one fsync for the whole batch — and only then
//! answers each caller. Nobody hears "done" before their change and its audit events are durable.

use crate::{
    AlertRow, Change, CredentialRecord, GrantFilter, MfaRecord, Result, Review, ReviewEntry,
    SecretRecord, Session, Store, StoreError, StoredCheckpoint, User,
};
use async_trait::async_trait;
use breakglass_core::audit::{self, AuditRecord, Head, IndexColumns, NewEvent};
use breakglass_core::grant::AnyGrant;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_alerts.sql")),
    (3, include_str!("../migrations/sqlite/0003_reviews.sql")),
    (4, include_str!("../migrations/sqlite/0004_secrets.sql")),
    (5, include_str!("../migrations/sqlite/0005_credentials.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_credential_lookups.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_credential_pickup.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_grants_by_resource.sql"),
    ),
];

/// Most units of work committed together.
const MAX_BATCH: usize = 128;

struct Job {
    changes: Vec<Change>,
    events: Vec<NewEvent>,
    reply: tokio::sync::oneshot::Sender<Result<Option<Head>>>,
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: tokio::sync::mpsc::Sender<Job>,
    /// The database file (None for in-memory stores); bulk audit reads open it directly.
    path: Option<std::path::PathBuf>,
}

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
            .busy_timeout(Duration::from_secs(10));
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

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn grant_from_row(row: &SqliteRow) -> Result<AnyGrant> {
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("grant document: {e}")))
}

fn user_from_row(row: &SqliteRow) -> Result<User> {
    let groups: String = row.try_get("groups_json")?;
    Ok(User {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        groups: serde_json::from_str(&groups)
            .map_err(|e| StoreError::Corrupt(format!("user groups: {e}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

fn alert_from_row(row: &SqliteRow) -> Result<AlertRow> {
    let doc: String = row.try_get("doc")?;
    Ok(AlertRow {
        id: row.try_get("id")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sink: row.try_get("sink")?,
        kind: row.try_get("kind")?,
        dedup_key: row.try_get("dedup_key")?,
        doc: serde_json::from_str(&doc)
            .map_err(|e| StoreError::Corrupt(format!("alert document: {e}")))?,
        state: row.try_get("state")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
        delivered_at: row
            .try_get::<Option<i64>, _>("delivered_at")?
            .map(Timestamp),
    })
}

fn review_from_row(row: &SqliteRow) -> Result<Review> {
    let by: String = row.try_get("by_json")?;
    Ok(Review {
        grant_id: row.try_get("grant_id")?,
        requester: row.try_get("requester")?,
        opened_at: Timestamp(row.try_get("opened_at")?),
        due_at: Timestamp(row.try_get("due_at")?),
        by: serde_json::from_str(&by)
            .map_err(|e| StoreError::Corrupt(format!("review groups: {e}")))?,
        state: row.try_get("state")?,
        escalated_at: row
            .try_get::<Option<i64>, _>("escalated_at")?
            .map(Timestamp),
    })
}

fn credential_from_row(row: &SqliteRow) -> Result<CredentialRecord> {
    let handle: String = row.try_get("handle")?;
    Ok(CredentialRecord {
        grant_id: row.try_get("grant_id")?,
        resource: row.try_get("resource")?,
        kind: row.try_get("kind")?,
        fingerprint: row.try_get("fingerprint")?,
        handle: serde_json::from_str(&handle)
            .map_err(|e| StoreError::Corrupt(format!("credential handle: {e}")))?,
        issued_at: Timestamp(row.try_get("issued_at")?),
        state: row.try_get("state")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: row
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .map(Timestamp),
        last_error: row.try_get("last_error")?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
        pickup: row.try_get("pickup")?,
    })
}

fn secret_from_row(row: &SqliteRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        resource: row.try_get("resource")?,
        sealed: row.try_get("sealed")?,
        version: row.try_get("version")?,
        must_rotate: row.try_get::<i64, _>("must_rotate")? != 0,
        updated_at: Timestamp(row.try_get("updated_at")?),
        updated_by: row.try_get("updated_by")?,
    })
}

/// The row whose key column equals `key`, mapped by `f`.
async fn fetch_one_by<T>(
    pool: &SqlitePool,
    sql: &str,
    key: &str,
    f: fn(&SqliteRow) -> Result<T>,
) -> Result<Option<T>> {
    sqlx::query(sql)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(f)
        .transpose()
}

/// Every row of a parameterless query, mapped by `f`.
async fn fetch_all<T>(
    pool: &SqlitePool,
    sql: &str,
    f: fn(&SqliteRow) -> Result<T>,
) -> Result<Vec<T>> {
    sqlx::query(sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(f)
        .collect()
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn record_from_row(row: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: u64::try_from(row.try_get::<i64, _>("seq")?)
            .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
        body: row.try_get("body")?,
        leaf_hash: hash32(row.try_get("leaf")?, "leaf hash")?,
        chain_hash: hash32(row.try_get("chain")?, "chain hash")?,
    })
}

async fn head(conn: &mut SqliteConnection) -> Result<Option<Head>> {
    let row = sqlx::query("SELECT seq, chain FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(conn)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(Head {
            seq: u64::try_from(r.try_get::<i64, _>("seq")?)
                .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
            chain_hash: hash32(r.try_get("chain")?, "chain hash")?,
        })),
    }
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq overflow".into()))
}

async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<()> {
    match change {
        Change::AddUser(u) => {
            let res = sqlx::query(
                "INSERT INTO users (name, password_hash, groups_json, disabled, created_at)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
            )
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(to_json(&u.groups)?)
            .bind(i64::from(u.disabled))
            .bind(u.created_at.0)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists(format!("user {}", u.name)));
            }
        }
        Change::SetUserDisabled { name, disabled } => {
            let res = sqlx::query("UPDATE users SET disabled = ? WHERE name = ?")
                .bind(i64::from(disabled))
                .bind(&name)
                .execute(&mut *conn)
                .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("user {name}")));
            }
        }
        Change::CreateSession {
            token_hash,
            session,
        } => {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&token_hash[..])
            .bind(&session.user)
            .bind(session.created_at.0)
            .bind(session.expires_at.0)
            .execute(&mut *conn)
            .await?;
        }
        Change::DeleteSession { token_hash } => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                .bind(&token_hash[..])
                .execute(&mut *conn)
                .await?;
        }
        Change::DeleteUserSessions { user } => {
            sqlx::query("DELETE FROM sessions WHERE user_name = ?")
                .bind(&user)
                .execute(&mut *conn)
                .await?;
        }
        Change::PutTotp {
            user,
            sealed,
            confirmed,
        } => {
            sqlx::query(
                "INSERT INTO mfa (user_name, totp_sealed, totp_confirmed, state_json) VALUES (?, ?, ?, '{}')
                 ON CONFLICT(user_name) DO UPDATE SET totp_sealed = excluded.totp_sealed,
                   totp_confirmed = excluded.totp_confirmed",
            )
            .bind(&user)
            .bind(sealed)
            .bind(i64::from(confirmed))
            .execute(&mut *conn)
            .await?;
        }
        Change::PutMfaState { user, state } => {
            sqlx::query(
                "INSERT INTO mfa (user_name, totp_sealed, totp_confirmed, state_json) VALUES (?, NULL, 0, ?)
                 ON CONFLICT(user_name) DO UPDATE SET state_json = excluded.state_json",
            )
            .bind(&user)
            .bind(to_json(&state)?)
            .execute(&mut *conn)
            .await?;
        }
        Change::InsertGrant(g) => {
            let info = g.info();
            sqlx::query(
                "INSERT INTO grants (id, user_name, resource, state, deadline, created_at, doc)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&info.id)
            .bind(&info.user)
            .bind(&info.resource)
            .bind(g.state_name())
            .bind(g.deadline().map(|t| t.0))
            .bind(info.requested_at.0)
            .bind(to_json(&g)?)
            .execute(&mut *conn)
            .await?;
        }
        Change::UpdateGrant {
            expected_state,
            grant,
        } => {
            let res = sqlx::query(
                "UPDATE grants SET state = ?, deadline = ?, doc = ? WHERE id = ? AND state = ?",
            )
            .bind(grant.state_name())
            .bind(grant.deadline().map(|t| t.0))
            .bind(to_json(&grant)?)
            .bind(grant.id())
            .bind(expected_state)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "grant {} is no longer {expected_state}",
                    grant.id()
                )));
            }
        }
        Change::EnqueueAlert(a) => {
            sqlx::query(
                "INSERT INTO alerts (created_at, sink, kind, dedup_key, doc, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(a.created_at.0)
            .bind(&a.sink)
            .bind(&a.kind)
            .bind(&a.dedup_key)
            .bind(to_json(&a.doc)?)
            .bind(a.created_at.0)
            .execute(&mut *conn)
            .await?;
        }
        Change::LeaseAlert {
            id,
            expected_next,
            until,
        } => {
            let res = sqlx::query(
                "UPDATE alerts SET next_attempt_at = ? WHERE id = ? AND state = 'pending' AND next_attempt_at = ?",
            )
            .bind(until.0)
            .bind(id)
            .bind(expected_next.0)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "alert {id} is being delivered elsewhere"
                )));
            }
        }
        Change::AlertAttempt {
            id,
            state,
            attempts,
            next_attempt_at,
            last_error,
            at,
        } => {
            sqlx::query(
                "UPDATE alerts SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
                   delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
            )
            .bind(state)
            .bind(i64::from(attempts))
            .bind(next_attempt_at.0)
            .bind(last_error)
            .bind(state)
            .bind(at.0)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        Change::RetryAlert { id, now } => {
            let res = sqlx::query(
                "UPDATE alerts SET state = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL WHERE id = ? AND state = 'failed'",
            )
            .bind(now.0)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("failed alert {id}")));
            }
        }
        Change::OpenReview(r) => {
            sqlx::query(
                "INSERT INTO reviews (grant_id, opened_at, due_at, by_json, requester, state) VALUES (?, ?, ?, ?, ?, 'open')",
            )
            .bind(&r.grant_id)
            .bind(r.opened_at.0)
            .bind(r.due_at.0)
            .bind(to_json(&r.by)?)
            .bind(&r.requester)
            .execute(&mut *conn)
            .await?;
        }
        Change::AddReviewEntry(e) => {
            sqlx::query(
                "INSERT INTO review_entries (grant_id, reviewer, verdict, notes, at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&e.grant_id)
            .bind(&e.reviewer)
            .bind(&e.verdict)
            .bind(&e.notes)
            .bind(e.at.0)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE reviews SET state = 'done' WHERE grant_id = ?")
                .bind(&e.grant_id)
                .execute(&mut *conn)
                .await?;
        }
        Change::EscalateReview { grant_id, at } => {
            let res = sqlx::query(
                "UPDATE reviews SET escalated_at = ? WHERE grant_id = ? AND escalated_at IS NULL AND state = 'open'",
            )
            .bind(at.0)
            .bind(&grant_id)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "review of {grant_id} already escalated"
                )));
            }
        }
        Change::PutSecret {
            resource,
            sealed,
            version,
            by,
            at,
        } => {
            // Optimistic: version must follow the stored one (1 for a new secret).
            let res = sqlx::query(
                "INSERT INTO secrets (resource, sealed, version, must_rotate, updated_at, updated_by) VALUES (?, ?, ?, 0, ?, ?)
                 ON CONFLICT(resource) DO UPDATE SET sealed = excluded.sealed, version = excluded.version,
                   must_rotate = 0, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 WHERE secrets.version = excluded.version - 1",
            )
            .bind(&resource)
            .bind(sealed)
            .bind(version)
            .bind(at.0)
            .bind(&by)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "secret {resource} changed meanwhile"
                )));
            }
        }
        Change::FlagSecretRotation { resource } => {
            sqlx::query("UPDATE secrets SET must_rotate = 1 WHERE resource = ?")
                .bind(&resource)
                .execute(&mut *conn)
                .await?;
        }
        Change::RecordCredential(c) => {
            sqlx::query(
                "INSERT INTO credentials (grant_id, resource, kind, fingerprint, handle, issued_at, state, pickup) VALUES (?, ?, ?, ?, ?, ?, 'issued', ?)",
            )
            .bind(&c.grant_id)
            .bind(&c.resource)
            .bind(&c.kind)
            .bind(&c.fingerprint)
            .bind(to_json(&c.handle)?)
            .bind(c.issued_at.0)
            .bind(&c.pickup)
            .execute(&mut *conn)
            .await?;
        }
        Change::StartRevocation { grant_id, at } => {
            sqlx::query("UPDATE credentials SET state = 'revoking', next_attempt_at = ?, pickup = NULL WHERE grant_id = ? AND state = 'issued'")
                .bind(at.0)
                .bind(&grant_id)
                .execute(&mut *conn)
                .await?;
        }
        Change::TakeCredentialPickup { grant_id } => {
            let r = sqlx::query(
                "UPDATE credentials SET pickup = NULL WHERE grant_id = ? AND pickup IS NOT NULL",
            )
            .bind(&grant_id)
            .execute(&mut *conn)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "the credential of {grant_id} was picked up already"
                )));
            }
        }
        Change::RevocationAttempt {
            grant_id,
            done,
            attempts,
            next_attempt_at,
            last_error,
            at,
        } => {
            sqlx::query(
                "UPDATE credentials SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, revoked_at = ?
                 WHERE grant_id = ? AND state = 'revoking'",
            )
            .bind(if done { "revoked" } else { "revoking" })
            .bind(i64::from(attempts))
            .bind((!done).then_some(next_attempt_at.0))
            .bind(last_error)
            .bind(done.then_some(at.0))
            .bind(&grant_id)
            .execute(&mut *conn)
            .await?;
        }
        Change::PutMeta { key, value } => {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )
            .bind(&key)
            .bind(value)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Applies one unit of work inside the open transaction, after `prev`; returns the new head.
async fn apply_job(
    conn: &mut SqliteConnection,
    changes: Vec<Change>,
    events: &[NewEvent],
    mut prev: Option<Head>,
) -> Result<Option<Head>> {
    for change in changes {
        apply(&mut *conn, change).await?;
    }
    for ev in events {
        let rec = audit::seal(prev, ev);
        sqlx::query(
            "INSERT INTO audit (seq, body, leaf, chain, ts, kind, grant_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq_i64(rec.seq)?)
        .bind(&rec.body)
        .bind(&rec.leaf_hash[..])
        .bind(&rec.chain_hash[..])
        .bind(ev.ts_ms)
        .bind(&ev.kind)
        .bind(&ev.grant_id)
        .execute(&mut *conn)
        .await?;
        prev = Some(Head {
            seq: rec.seq,
            chain_hash: rec.chain_hash,
        });
    }
    Ok(prev)
}

fn read_audit(path: &Path, from: u64, limit: u32) -> Result<Vec<(AuditRecord, IndexColumns)>> {
    use rusqlite::{Connection, OpenFlags};
    let db = |e: rusqlite::Error| StoreError::CommitFailed(format!("audit read: {e}"));
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, body, leaf, chain, ts, kind, grant_id FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(db)?;
    let mut rows = stmt.query((seq_i64(from)?, i64::from(limit))).map_err(db)?;
    let mut out = Vec::with_capacity(limit.min(100_000) as usize);
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        out.push((
            AuditRecord {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
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

async fn run_batch(pool: &SqlitePool, jobs: Vec<Job>) {
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

    async fn user(&self, name: &str) -> Result<Option<User>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM users WHERE name = ?",
            name,
            user_from_row,
        )
        .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM users ORDER BY name",
            user_from_row,
        )
        .await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT user_name, created_at, expires_at FROM sessions WHERE token_hash = ?",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                user: r.try_get("user_name")?,
                created_at: Timestamp(r.try_get("created_at")?),
                expires_at: Timestamp(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    async fn mfa(&self, user: &str) -> Result<MfaRecord> {
        let row = sqlx::query(
            "SELECT totp_sealed, totp_confirmed, state_json FROM mfa WHERE user_name = ?",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(MfaRecord::default());
        };
        let state: String = r.try_get("state_json")?;
        Ok(MfaRecord {
            totp_sealed: r.try_get("totp_sealed")?,
            totp_confirmed: r.try_get::<i64, _>("totp_confirmed")? != 0,
            state: serde_json::from_str(&state)
                .map_err(|e| StoreError::Corrupt(format!("mfa state: {e}")))?,
        })
    }

    async fn grant(&self, id: &str) -> Result<Option<AnyGrant>> {
        fetch_one_by(
            &self.pool,
            "SELECT doc FROM grants WHERE id = ?",
            id,
            grant_from_row,
        )
        .await
    }

    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<AnyGrant>> {
        let mut sql = String::from("SELECT doc FROM grants WHERE 1=1");
        if filter.user.is_some() {
            sql.push_str(" AND user_name = ?");
        }
        if !filter.states.is_empty() {
            sql.push_str(" AND state IN (");
            sql.push_str(&vec!["?"; filter.states.len()].join(","));
            sql.push(')');
        }
        sql.push_str(" ORDER BY created_at DESC, id LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(u) = &filter.user {
            q = q.bind(u);
        }
        for s in &filter.states {
            q = q.bind(s);
        }
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        q = q.bind(i64::from(limit));
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    async fn grant_stats(
        &self,
        user: &str,
        resource: &str,
        user_since: Timestamp,
        resource_since: Timestamp,
    ) -> Result<(u64, u64, bool)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE user_name = ? AND created_at >= ? LIMIT ?)) AS u,
                    (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE resource = ? AND created_at >= ? LIMIT ?)) AS r,
                    EXISTS(SELECT 1 FROM grants WHERE user_name = ? AND resource = ?) AS e",
        )
        .bind(user)
        .bind(user_since.0)
        .bind(crate::GRANT_STATS_CAP as i64)
        .bind(resource)
        .bind(resource_since.0)
        .bind(crate::GRANT_STATS_CAP as i64)
        .bind(user)
        .bind(resource)
        .fetch_one(&self.pool)
        .await?;
        let n =
            |k: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(k)?).unwrap_or(0)) };
        Ok((n("u")?, n("r")?, row.try_get::<i64, _>("e")? != 0))
    }

    async fn grants_since(&self, since: Timestamp, limit: u32) -> Result<Vec<AnyGrant>> {
        sqlx::query("SELECT doc FROM grants WHERE created_at >= ? ORDER BY created_at LIMIT ?")
            .bind(since.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    async fn audit_kind_counts(&self, since: Timestamp) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            // Read from the hashed body, not the `kind`/`ts` index columns (`audit verify`
            // checks those, but a summary must not depend on it having been run).
            "SELECT json_extract(CAST(body AS TEXT), '$.kind') AS kind, COUNT(*) AS n FROM audit \
             WHERE json_extract(CAST(body AS TEXT), '$.ts') >= ? GROUP BY 1 ORDER BY 1",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind")?,
                    u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn count_grants(&self, state: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM grants WHERE state = ?")
            .bind(state)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn due_grants(&self, now: Timestamp, limit: u32) -> Result<Vec<AnyGrant>> {
        sqlx::query(
            "SELECT doc FROM grants WHERE deadline IS NOT NULL AND deadline <= ? ORDER BY deadline LIMIT ?",
        )
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(deadline) FROM grants WHERE deadline IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.map(Timestamp))
    }

    async fn audit_head(&self) -> Result<Option<Head>> {
        let mut conn = self.pool.acquire().await?;
        head(&mut conn).await
    }

    async fn audit_records(&self, from: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        Ok(self
            .audit_rows(from, limit)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<(AuditRecord, IndexColumns)>> {
        if let Some(path) = self.path.clone() {
            // Bulk reads (verification, export, checkpoints) bypass the async driver: a plain
            // read-only connection on a blocking thread is several times faster per row.
            return tokio::task::spawn_blocking(move || read_audit(&path, from, limit))
                .await
                .map_err(|e| StoreError::CommitFailed(format!("reader task: {e}")))?;
        }
        sqlx::query(
            "SELECT seq, body, leaf, chain, ts, kind, grant_id FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?",
        )
        .bind(seq_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                record_from_row(row)?,
                IndexColumns {
                    ts_ms: row.try_get("ts")?,
                    kind: row.try_get("kind")?,
                    grant_id: row.try_get("grant_id")?,
                },
            ))
        })
        .collect()
    }

    async fn audit_for_grant(&self, grant_id: &str) -> Result<Vec<AuditRecord>> {
        sqlx::query("SELECT seq, body, leaf, chain FROM audit WHERE grant_id = ? ORDER BY seq")
            .bind(grant_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(record_from_row)
            .collect()
    }

    async fn add_checkpoint(&self, cp: StoredCheckpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO checkpoints (size, note, created_at) VALUES (?, ?, ?) ON CONFLICT(size) DO NOTHING",
        )
        .bind(seq_i64(cp.size)?)
        .bind(&cp.note)
        .bind(cp.created_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query("SELECT size, note, created_at FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredCheckpoint {
                    size: u64::try_from(r.try_get::<i64, _>("size")?)
                        .map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
                    note: r.try_get("note")?,
                    created_at: Timestamp(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn due_alerts(&self, now: Timestamp, limit: u32) -> Result<Vec<AlertRow>> {
        sqlx::query("SELECT * FROM alerts WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(alert_from_row)
            .collect()
    }

    async fn alerts(&self, state: Option<&str>, limit: u32) -> Result<Vec<AlertRow>> {
        let rows = match state {
            Some(s) => {
                sqlx::query("SELECT * FROM alerts WHERE state = ? ORDER BY id DESC LIMIT ?")
                    .bind(s)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM alerts ORDER BY id DESC LIMIT ?")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(alert_from_row).collect()
    }

    async fn next_alert_at(&self) -> Result<Option<Timestamp>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM alerts WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.map(Timestamp))
    }

    async fn review(&self, grant_id: &str) -> Result<Option<Review>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM reviews WHERE grant_id = ?",
            grant_id,
            review_from_row,
        )
        .await
    }

    async fn reviews(&self, open_only: bool, limit: u32) -> Result<Vec<Review>> {
        let sql = if open_only {
            "SELECT * FROM reviews WHERE state = 'open' ORDER BY due_at LIMIT ?"
        } else {
            "SELECT * FROM reviews ORDER BY opened_at DESC LIMIT ?"
        };
        sqlx::query(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(review_from_row)
            .collect()
    }

    async fn review_entries(&self, grant_id: &str) -> Result<Vec<ReviewEntry>> {
        let rows = sqlx::query("SELECT * FROM review_entries WHERE grant_id = ? ORDER BY id")
            .bind(grant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReviewEntry {
                    grant_id: r.try_get("grant_id")?,
                    reviewer: r.try_get("reviewer")?,
                    verdict: r.try_get("verdict")?,
                    notes: r.try_get("notes")?,
                    at: Timestamp(r.try_get("at")?),
                })
            })
            .collect()
    }

    async fn overdue_reviews(&self, now: Timestamp) -> Result<Vec<Review>> {
        sqlx::query("SELECT * FROM reviews WHERE state = 'open' AND escalated_at IS NULL AND due_at <= ? ORDER BY due_at LIMIT 100")
            .bind(now.0)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(review_from_row)
            .collect()
    }

    async fn credential(&self, grant_id: &str) -> Result<Option<CredentialRecord>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM credentials WHERE grant_id = ?",
            grant_id,
            credential_from_row,
        )
        .await
    }

    async fn due_revocations(&self, now: Timestamp, limit: u32) -> Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT * FROM credentials WHERE state = 'revoking' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from_row)
            .collect()
    }

    async fn open_credentials(&self, resource: &str) -> Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT * FROM credentials WHERE resource = ? AND state <> 'revoked'")
            .bind(resource)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from_row)
            .collect()
    }

    async fn revoked_credentials(&self, kind: &str) -> Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT * FROM credentials WHERE kind = ? AND state IN ('revoking', 'revoked')")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from_row)
            .collect()
    }

    async fn secret(&self, resource: &str) -> Result<Option<SecretRecord>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM secrets WHERE resource = ?",
            resource,
            secret_from_row,
        )
        .await
    }

    async fn secrets(&self) -> Result<Vec<SecretRecord>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM secrets ORDER BY resource",
            secret_from_row,
        )
        .await
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }
}
