//! The audit log over a store: signing checkpoints, exporting JSON lines, and verifying the
//! stored chain (`breakglass audit verify --data-dir`). The mathematics lives in
//! `breakglass_core::audit`; this module only streams rows to and from it.

use crate::engine::Engine;
use breakglass_core::audit::{
    self, Checkpoint, Verifier, VerifyError, VerifyErrorKind, VerifyReport, merkle::Frontier,
};
use breakglass_core::recording::{CHUNK_EVENT, RecordingVerifier};
use breakglass_store::{Store, StoreError, StoredCheckpoint};
use ed25519_dalek::VerifyingKey;
use std::sync::Arc;

/// Rows fetched per query when streaming the log.
const BATCH: u32 = 10_000;

/// Keeps an incremental Merkle tree of the stored log and signs its head.
pub struct Checkpointer {
    frontier: Frontier,
    signed_size: u64,
}

impl Checkpointer {
    /// Rebuilds the tree from the stored leaf hashes.
    pub async fn load(engine: &Engine) -> Result<Self, StoreError> {
        let signed_size = engine
            .store
            .checkpoints()
            .await?
            .last()
            .map(|c| c.size)
            .unwrap_or(0);
        let mut cp = Checkpointer {
            frontier: Frontier::new(),
            signed_size,
        };
        cp.catch_up(engine).await?;
        Ok(cp)
    }

    /// Re-reads the last signed size (another node may have signed meanwhile).
    pub async fn refresh_signed(&mut self, engine: &Engine) -> Result<(), StoreError> {
        if let Some(c) = engine.store.latest_checkpoint().await? {
            self.signed_size = self.signed_size.max(c.size);
        }
        Ok(())
    }

    /// Adds newly stored records to the tree; returns how many are not yet signed.
    pub async fn catch_up(&mut self, engine: &Engine) -> Result<u64, StoreError> {
        loop {
            let from = self.frontier.size() + 1;
            let recs = engine.store.audit_records(from, BATCH).await?;
            let n = recs.len();
            for r in recs {
                if r.seq != self.frontier.size() + 1 {
                    return Err(StoreError::Corrupt(format!(
                        "audit log has a gap at event {}",
                        self.frontier.size() + 1
                    )));
                }
                self.frontier.push(r.leaf_hash);
            }
            if n < BATCH as usize {
                break;
            }
        }
        Ok(self.frontier.size().saturating_sub(self.signed_size))
    }

    /// Signs and stores a checkpoint of the current tree, fenced on `fence` (the
    /// checkpointer's lease) when given.
    pub async fn sign(
        &mut self,
        engine: &Engine,
        fence: Option<breakglass_store::Change>,
    ) -> Result<(), StoreError> {
        let size = self.frontier.size();
        if size == 0 || size == self.signed_size {
            return Ok(());
        }
        let cp = Checkpoint {
            origin: engine.keys.origin.clone(),
            size,
            root: self.frontier.root(),
        };
        let note = cp.sign(&engine.keys.audit_signing, &engine.keys.origin);
        let mut changes: Vec<_> = fence.into_iter().collect();
        changes.push(breakglass_store::Change::AddCheckpoint(StoredCheckpoint {
            size,
            note,
            created_at: engine.now(),
        }));
        engine.store.commit(changes, Vec::new()).await?;
        engine.metrics.checkpoints.inc();
        engine.witness_wake.notify_waiters();
        self.signed_size = size;
        Ok(())
    }
}

/// Verifies the whole stored log and every checkpoint against `key`.
pub async fn verify_store(
    store: &dyn Store,
    key: VerifyingKey,
    origin: &str,
) -> Result<Result<VerifyReport, VerifyError>, StoreError> {
    verify_store_inner(store, key, origin, None).await
}

/// [`verify_store`], then checks the log against the checkpoint copies a witness kept
/// (`(file, note)`, see [`crate::stream::witness::read_dir`]): each copy's signature, and an
/// RFC 6962 consistency proof from it to the log's current tree. No copy at all is a failure.
pub async fn verify_store_witnessed(
    store: &dyn Store,
    key: VerifyingKey,
    origin: &str,
    copies: &[(String, String)],
) -> Result<Result<(VerifyReport, audit::witness::WitnessReport), VerifyError>, StoreError> {
    let mut leaves = Vec::new();
    let report = match verify_store_inner(store, key, origin, Some(&mut leaves)).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    Ok(check_witness(leaves, &key, origin, copies).map(|w| (report, w)))
}

/// Checks witnessed checkpoint copies against the (verified) leaves of a log.
pub fn check_witness(
    leaves: Vec<audit::merkle::Hash>,
    key: &VerifyingKey,
    origin: &str,
    copies: &[(String, String)],
) -> Result<audit::witness::WitnessReport, VerifyError> {
    if copies.is_empty() {
        return Err(VerifyError::new(
            None,
            VerifyErrorKind::Malformed,
            "the witness holds no checkpoint copies (checkpoint-*.note): nothing to check the log against (is it the witness `dir` of the policy, and has the server copied to it?)",
        ));
    }
    let tree = audit::witness::Tree::new(leaves);
    audit::witness::check_all(&tree, key, origin, copies)
}

async fn verify_store_inner(
    store: &dyn Store,
    key: VerifyingKey,
    origin: &str,
    mut leaves: Option<&mut Vec<audit::merkle::Hash>>,
) -> Result<Result<VerifyReport, VerifyError>, StoreError> {
    let checkpoints = store.checkpoints().await?;
    let mut cps = checkpoints.iter().peekable();
    let mut v = Verifier::new(key, origin.to_string(), origin.to_string());
    let mut recordings = RecordingVerifier::default();
    let mut batch = store.audit_rows(1, BATCH).await?;
    loop {
        let done = batch.len() < BATCH as usize;
        let next_from = batch.last().map(|(r, _)| r.seq + 1).unwrap_or(1);
        // Read the next batch while this one is checked (the reader runs on another thread).
        let fetch = async {
            if done {
                Ok(Vec::new())
            } else {
                store.audit_rows(next_from, BATCH).await
            }
        };
        let check = async {
            for (r, columns) in &batch {
                v.push_stored(r.seq, &r.body, &r.leaf_hash, &r.chain_hash, columns)?;
                if let Some(l) = leaves.as_deref_mut() {
                    l.push(r.leaf_hash);
                }
                if columns.kind == CHUNK_EVENT {
                    // The body hashed to its leaf and its columns match it: genuine.
                    let ev = audit::decode_body(&r.body).map_err(|e| {
                        VerifyError::new(Some(r.seq), VerifyErrorKind::Malformed, e.to_string())
                    })?;
                    recordings.expect(r.seq, &ev.data)?;
                }
                while let Some(cp) = cps.peek() {
                    if cp.size > r.seq {
                        break;
                    }
                    v.checkpoint(&cp.note)?;
                    cps.next();
                }
            }
            Ok::<(), VerifyError>(())
        };
        let (next, checked) = tokio::join!(fetch, check);
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        if done {
            break;
        }
        batch = next?;
    }
    for cp in cps {
        if let Err(e) = v.checkpoint(&cp.note) {
            return Ok(Err(e));
        }
    }
    let report = match v.finish() {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    Ok(verify_recordings(store, recordings)
        .await?
        .map(|r| VerifyReport {
            recorded_sessions: r.sessions,
            recorded_chunks: r.chunks,
            purged_chunks: r.purged,
            ..report
        }))
}

/// Checks every stored recording chunk against the digests the (verified) trail recorded.
async fn verify_recordings(
    store: &dyn Store,
    mut v: RecordingVerifier,
) -> Result<Result<RecordingVerifier, VerifyError>, StoreError> {
    const PAGE: u32 = 64;
    let mut after = String::new();
    loop {
        let sessions = store.all_recording_sessions(&after, 500).await?;
        let Some(last) = sessions.last() else { break };
        after = last.id.clone();
        for s in &sessions {
            let mut from = 0;
            loop {
                let chunks = store.recording_chunks(&s.id, from, PAGE).await?;
                for c in &chunks {
                    if let Err(e) = v.chunk(&s.id, c.seq, &c.digest, c.payload.as_deref()) {
                        return Ok(Err(e));
                    }
                }
                match chunks.last() {
                    Some(c) if chunks.len() == PAGE as usize => from = c.seq + 1,
                    _ => break,
                }
            }
            v.session_done();
        }
    }
    Ok(v.finish().map(|()| v))
}

/// Writes the export (header, events, checkpoints) as JSON lines to `out`.
pub async fn export_to<W: std::io::Write>(
    store: &dyn Store,
    key: &VerifyingKey,
    origin: &str,
    out: &mut W,
) -> Result<u64, ExportError> {
    let checkpoints = store.checkpoints().await?;
    let mut cps = checkpoints.iter().peekable();
    writeln!(out, "{}", audit::export::header_line(origin, key))?;
    let mut next = 1u64;
    let mut count = 0;
    loop {
        let recs = store.audit_records(next, BATCH).await?;
        let n = recs.len();
        for r in recs {
            writeln!(out, "{}", audit::export::event_line(&r)?)?;
            count += 1;
            while let Some(cp) = cps.peek() {
                if cp.size > r.seq {
                    break;
                }
                writeln!(out, "{}", audit::export::checkpoint_line(cp.size, &cp.note))?;
                cps.next();
            }
            next = r.seq + 1;
        }
        if n < BATCH as usize {
            break;
        }
    }
    for cp in cps {
        writeln!(out, "{}", audit::export::checkpoint_line(cp.size, &cp.note))?;
    }
    Ok(count)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

/// The export as a streamed HTTP body (built in batches, so memory stays flat).
pub fn export_body(engine: Arc<Engine>) -> axum::body::Body {
    use futures_util::stream;
    enum St {
        Header,
        Rows(u64),
        Done,
    }
    let key = engine.keys.audit_public();
    let origin = engine.keys.origin.clone();
    let s = stream::unfold(
        (St::Header, engine, None::<Vec<StoredCheckpoint>>),
        move |(st, engine, cps)| {
            let origin = origin.clone();
            async move {
                match st {
                    St::Header => {
                        let cps = match engine.store.checkpoints().await {
                            Ok(c) => c,
                            Err(e) => {
                                return Some((
                                    Err(std::io::Error::other(e.to_string())),
                                    (St::Done, engine, None),
                                ));
                            }
                        };
                        let line = format!("{}\n", audit::export::header_line(&origin, &key));
                        Some((Ok(line.into_bytes()), (St::Rows(1), engine, Some(cps))))
                    }
                    St::Rows(from) => {
                        let recs = match engine.store.audit_records(from, BATCH).await {
                            Ok(r) => r,
                            Err(e) => {
                                return Some((
                                    Err(std::io::Error::other(e.to_string())),
                                    (St::Done, engine, cps),
                                ));
                            }
                        };
                        let cps_all = cps.unwrap_or_default();
                        let mut buf = Vec::new();
                        let last = recs.last().map(|r| r.seq);
                        let done = recs.len() < BATCH as usize;
                        for r in &recs {
                            match audit::export::event_line(r) {
                                Ok(l) => {
                                    buf.extend_from_slice(l.as_bytes());
                                    buf.push(b'\n');
                                }
                                Err(e) => {
                                    return Some((
                                        Err(std::io::Error::other(e.to_string())),
                                        (St::Done, engine, None),
                                    ));
                                }
                            }
                            for cp in cps_all.iter().filter(|c| c.size == r.seq) {
                                buf.extend_from_slice(
                                    audit::export::checkpoint_line(cp.size, &cp.note).as_bytes(),
                                );
                                buf.push(b'\n');
                            }
                        }
                        if done {
                            // Checkpoints beyond the last row (a truncated log) are exported too.
                            let end = last.unwrap_or(from.saturating_sub(1));
                            for cp in cps_all.iter().filter(|c| c.size > end) {
                                buf.extend_from_slice(
                                    audit::export::checkpoint_line(cp.size, &cp.note).as_bytes(),
                                );
                                buf.push(b'\n');
                            }
                            Some((Ok(buf), (St::Done, engine, None)))
                        } else {
                            let next = last.map(|s| s + 1).unwrap_or(from);
                            Some((Ok(buf), (St::Rows(next), engine, Some(cps_all))))
                        }
                    }
                    St::Done => None,
                }
            }
        },
    );
    axum::body::Body::from_stream(s)
}

/// The audit check a drill runs: the whole stored chain and its checkpoints.
pub struct DrillAuditCheck;

#[async_trait::async_trait]
impl crate::engine::AuditCheck for DrillAuditCheck {
    async fn verify(&self, engine: &Engine) -> Result<String, String> {
        match verify_store(
            &*engine.store,
            engine.keys.audit_public(),
            &engine.keys.origin,
        )
        .await
        {
            Ok(Ok(r)) => Ok(format!(
                "audit chain verified: {} events, {} checkpoints",
                r.events, r.checkpoints
            )),
            Ok(Err(e)) => Err(format!("audit verify failed: {e}")),
            Err(e) => Err(format!("audit verify could not read the store: {e}")),
        }
    }
}
