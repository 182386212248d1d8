//! The group-commit writer, shared by both backends: it takes every unit of work waiting, runs
//! each inside its own SAVEPOINT of one transaction (a unit that fails is rolled back alone),
//! commits once — one durable flush for the whole batch — and only then answers each caller.
//! Nobody hears "done" before their change and its audit events are durable. How the
//! transaction begins and how the audit head is read (and locked) is the dialect's.

use super::common::Job;
use super::db::{Backend, Conn, Pool};
use super::{
    alerts, audit, credentials, drills, glass_cases, grants, leases, passkeys, recordings, reviews,
    secrets, streams, users,
};
use crate::{Change, Result, Store, StoreError, sql};
use async_trait::async_trait;
use breakglass_core::audit::{Head, NewEvent};
use breakglass_core::time::Timestamp;

/// Most units of work committed together.
const MAX_BATCH: usize = 128;

/// A batch that takes longer than this is logged (how long its changes, the wait for the
/// audit head and the rest took): requests and expiries wait on it.
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(250);

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
    offer!(conn, change => users, grants, alerts, reviews, credentials, secrets, recordings, streams, passkeys, drills, glass_cases, leases);
    match change {
        Change::PutMeta { key, value } => {
            super::common::write(conn, sqlx::query(sql::PUT_META).bind(key).bind(value)).await?;
        }
        Change::AddCheckpoint(cp) => {
            let q = sqlx::query(crate::audit::sql::ADD_CHECKPOINT)
                .bind(audit::seq_i64(cp.size)?)
                .bind(cp.note)
                .bind(cp.created_at.0);
            super::common::write(conn, q).await?;
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "no table takes this change: {other:?}"
            )));
        }
    }
    Ok(())
}

/// Applies one unit's changes inside the open transaction (its events come later).
async fn apply_changes(conn: &mut Conn, changes: Vec<Change>) -> Result<()> {
    for change in changes {
        apply(&mut *conn, change).await?;
    }
    Ok(())
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

/// The grant a unit locks first, by which a batch's units are ordered.
fn unit_key(job: &Job) -> Option<&str> {
    job.changes.iter().find_map(Change::grant_id)
}

type Reply = tokio::sync::oneshot::Sender<Result<Option<Head>>>;

/// One batch in one transaction: every unit's changes first (each in its own SAVEPOINT when
/// there are several, so a unit that fails is rolled back alone), then — last, so other nodes
/// wait on it as briefly as can be — the audit head is locked and read, the events of the
/// units that applied are chained after it in order, the head row moves once, and the
/// transaction commits. Only then is each caller answered.
async fn run_batch(pool: &Pool, mut jobs: Vec<Job>) {
    let started = std::time::Instant::now();
    let batch_units = jobs.len();
    let fail_all = |replies: Vec<Reply>, why: StoreError| {
        for reply in replies {
            let _ = reply.send(Err(why.batch_failed()));
        }
    };
    let mut tx = match super::dialect::begin(pool).await {
        Ok(tx) => tx,
        Err(e) => {
            let why = StoreError::from(e);
            for j in jobs {
                let _ = j.reply.send(Err(why.batch_failed()));
            }
            return;
        }
    };
    // Rows are locked in one order on every node: units that lock a grant's rows by grant id
    // (after those that lock none). Batches arrive in whatever order their callers finished;
    // two nodes ending the same due grants in opposite orders would otherwise deadlock (seen
    // when nodes caught up after the store restarted). Units in one batch are independent
    // callers, so their order among themselves is free.
    jobs.sort_by(|a, b| unit_key(a).cmp(&unit_key(b)));
    // Units whose changes applied, with their events; units that failed are answered now.
    let mut applied: Vec<(Reply, Vec<NewEvent>)> = Vec::with_capacity(jobs.len());
    if jobs.len() == 1
        && let Some(job) = jobs.pop()
    {
        // One unit alone needs no savepoint: if it fails, the whole transaction is dropped.
        match apply_changes(&mut tx, job.changes).await {
            Ok(()) => applied.push((job.reply, job.events)),
            Err(e) => {
                let _ = job.reply.send(Err(e));
                return;
            }
        }
    }
    for job in jobs {
        if let Err(e) = sqlx::query("SAVEPOINT unit").execute(&mut *tx).await {
            let _ = job.reply.send(Err(StoreError::from(e).batch_failed()));
            continue;
        }
        let result = apply_changes(&mut tx, job.changes).await;
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
            (Ok(()), Ok(_)) => applied.push((job.reply, job.events)),
            (Err(e), _) => {
                let _ = job.reply.send(Err(e));
            }
            (Ok(()), Err(e)) => {
                // The transaction is in an unknown state: give up on the whole batch.
                drop(tx);
                let mut replies: Vec<Reply> = applied.into_iter().map(|(r, _)| r).collect();
                replies.push(job.reply);
                return fail_all(replies, StoreError::from(e));
            }
        }
    }
    if applied.is_empty() {
        return;
    }
    let replies = |applied: Vec<(Reply, Vec<NewEvent>)>| -> Vec<Reply> {
        applied.into_iter().map(|(r, _)| r).collect()
    };
    if applied.iter().all(|(_, events)| events.is_empty()) {
        // Nothing to append (a claim, a cursor, a lease): the audit head is not touched.
        match tx.commit().await {
            Ok(()) => {
                for (reply, _) in applied {
                    let _ = reply.send(Ok(None));
                }
            }
            Err(e) => fail_all(replies(applied), StoreError::from(e)),
        }
        return;
    }
    let before_head = started.elapsed();
    let mut prev = match super::dialect::head_for_append(&mut tx).await {
        Ok(h) => h,
        Err(e) => return fail_all(replies(applied), e),
    };
    let head_wait = started.elapsed() - before_head;
    let start = prev;
    let units: Vec<&[NewEvent]> = applied.iter().map(|(_, e)| e.as_slice()).collect();
    let heads = match audit::append_units(&mut tx, &units, prev).await {
        Ok(h) => h,
        // A failed append leaves the chain unknown in this transaction: all fail.
        Err(e) => {
            drop(tx);
            return fail_all(replies(applied), e);
        }
    };
    prev = heads.last().copied().flatten().or(start);
    let answers: Vec<(Reply, Option<Head>)> =
        applied.into_iter().map(|(r, _)| r).zip(heads).collect();
    if let Some(h) = prev
        && prev != start
        && let Err(e) = super::dialect::moved_head(&mut tx, h).await
    {
        drop(tx);
        return fail_all(answers.into_iter().map(|(r, _)| r).collect(), e);
    }
    let committed = tx.commit().await;
    let took = started.elapsed();
    if took > SLOW_BATCH {
        tracing::warn!(
            units = batch_units,
            events = prev.map_or(0, |h| h.seq) - start.map_or(0, |h| h.seq),
            took_ms = took.as_millis() as u64,
            changes_ms = before_head.as_millis() as u64,
            head_wait_ms = head_wait.as_millis() as u64,
            "slow commit: the store took long to make a batch durable"
        );
    }
    match committed {
        Ok(()) => {
            for (reply, head) in answers {
                let _ = reply.send(Ok(head));
            }
        }
        Err(e) => fail_all(
            answers.into_iter().map(|(r, _)| r).collect(),
            StoreError::from(e),
        ),
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

    async fn db_now(&self) -> Result<Timestamp> {
        let ms: i64 = sqlx::query_scalar(super::dialect::NOW_MS)
            .fetch_one(&self.pool)
            .await?;
        Ok(Timestamp(ms))
    }
}
