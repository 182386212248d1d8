//! The group-commit writer, shared by both backends: it takes every unit of work waiting, runs
//! each inside its own SAVEPOINT of one transaction (a unit that fails is rolled back alone),
//! commits once — one durable flush for the whole batch — and only then answers each caller.
//! Nobody hears "done" before their change and its audit events are durable. How the
//! transaction begins and how the audit head is read (and locked) is the dialect's.

use super::common::Job;
use super::db::{Backend, Conn, Pool};
use super::{
    alerts, audit, credentials, drills, glass_cases, grants, passkeys, recordings, reviews,
    secrets, streams, users,
};
use crate::{Change, Result, Store, StoreError, sql};
use async_trait::async_trait;
use breakglass_core::audit::{Head, NewEvent};

/// Most units of work committed together.
const MAX_BATCH: usize = 128;

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
async fn apply(conn: &mut Conn, change: Change) -> Result<()> {
    offer!(conn, change => users, grants, alerts, reviews, credentials, secrets, recordings, streams, passkeys, drills, glass_cases);
    match change {
        Change::PutMeta { key, value } => {
            super::common::write(conn, sqlx::query(sql::PUT_META).bind(key).bind(value)).await?;
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
    conn: &mut Conn,
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
pub(super) async fn writer(pool: Pool, mut rx: tokio::sync::mpsc::Receiver<Job>) {
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

async fn run_batch(pool: &Pool, mut jobs: Vec<Job>) {
    let fail_all = |jobs: Vec<Job>, why: String| {
        for j in jobs {
            let _ = j.reply.send(Err(StoreError::CommitFailed(why.clone())));
        }
    };
    let mut tx = match super::dialect::begin(pool).await {
        Ok(tx) => tx,
        Err(e) => return fail_all(jobs, e.to_string()),
    };
    let mut prev = match super::dialect::head_for_append(&mut tx).await {
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
impl Store for Backend {
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

    fn backend(&self) -> &'static str {
        super::dialect::NAME
    }
}
