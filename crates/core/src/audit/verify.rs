//! The verifier: fed the stored rows in order and the signed checkpoints, it recomputes every
//! leaf and chain link, rebuilds the Merkle tree incrementally ([`Frontier`]), and checks each
//! checkpoint's signature and root. It stops at the first problem and names the event.
//!
//! Per row it costs two SHA-256 over the body and two 64-byte hashes (chain link, amortised tree
//! node); the body's `seq` is read from its fixed tail ([`body_seq`]) instead of parsing JSON.

use super::columns::check_columns;
use super::merkle::{self, Frontier, Hash};
use super::{AuditError, Checkpoint, Head, IndexColumns, body_seq, chain_hash};
use ed25519_dalek::VerifyingKey;
use thiserror::Error;

/// What kind of damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyErrorKind {
    /// A body does not hash to its recorded leaf hash.
    Modified,
    /// A sequence number is skipped: a row was deleted (or a later one moved before it).
    Missing,
    /// A row is out of place: its seq comes again or too late, or its body is another event's.
    Reordered,
    /// The recorded chain hash does not follow from the previous event.
    BrokenChain,
    /// A checkpoint covers more events than the log holds.
    Truncated,
    /// A checkpoint is not validly signed by the expected key.
    BadSignature,
    /// A validly signed checkpoint whose root differs from the recomputed tree.
    RootMismatch,
    /// A checkpoint that is malformed, for another log, or out of order.
    BadCheckpoint,
    /// Input that is not in the format at all.
    Malformed,
    /// A store column kept beside the body (`ts`, `kind`, `grant_id`) differs from the body.
    ColumnMismatch,
    /// A stored session recording chunk differs from, or lacks, the digest the trail recorded.
    Recording,
}

/// The first problem found. `seq` names the first bad event when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct VerifyError {
    pub seq: Option<u64>,
    pub kind: VerifyErrorKind,
    pub message: String,
}

impl VerifyError {
    pub fn new(seq: Option<u64>, kind: VerifyErrorKind, message: impl Into<String>) -> Self {
        VerifyError {
            seq,
            kind,
            message: message.into(),
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub checkpoints: u64,
    pub head: Option<Head>,
    pub last_checkpoint_size: u64,
    /// Events after the last checkpoint (verified as a chain, not yet signed).
    pub unsigned_tail: u64,
    /// Session recordings checked against the trail (0 when only an export was verified).
    pub recorded_sessions: u64,
    pub recorded_chunks: u64,
    /// Chunks whose payload retention deleted (their digests checked).
    pub purged_chunks: u64,
}

/// Streaming verifier. Feed rows with [`Verifier::push`] in seq order; feed each checkpoint
/// with [`Verifier::checkpoint`] right after the row whose seq equals its size (checkpoints
/// beyond the last row after all rows); then call [`Verifier::finish`]. After the first error
/// every call returns that same error.
pub struct Verifier {
    key: VerifyingKey,
    key_name: String,
    origin: String,
    frontier: Frontier,
    prev_chain: Hash,
    checkpoints: u64,
    last_checkpoint_size: u64,
    failed: Option<VerifyError>,
}

impl Verifier {
    pub fn new(key: VerifyingKey, key_name: String, origin: String) -> Self {
        Verifier {
            key,
            key_name,
            origin,
            frontier: Frontier::new(),
            prev_chain: [0; 32],
            checkpoints: 0,
            last_checkpoint_size: 0,
            failed: None,
        }
    }

    /// Events verified so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The head after the events verified so far.
    pub fn head(&self) -> Option<Head> {
        let seq = self.frontier.size();
        (seq > 0).then_some(Head {
            seq,
            chain_hash: self.prev_chain,
        })
    }

    /// The Merkle root of the events verified so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    fn record<T>(&mut self, r: Result<T, VerifyError>) -> Result<T, VerifyError> {
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn check_failed(&self) -> Result<(), VerifyError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Feeds the next stored row: checks its seq is the next one, recomputes its leaf hash from
    /// `body`, checks the body's own `seq`, and the chain hash.
    pub fn push(
        &mut self,
        seq: u64,
        body: &[u8],
        stored_leaf: &Hash,
        stored_chain: &Hash,
    ) -> Result<(), VerifyError> {
        self.check_failed()?;
        let r = self.push_row(seq, body, stored_leaf, stored_chain);
        self.record(r)
    }

    /// [`Verifier::push`] for a row of a store, plus its index columns: each must equal the
    /// field of the (authenticated) body it copies, since reports and summaries read them.
    pub fn push_stored(
        &mut self,
        seq: u64,
        body: &[u8],
        stored_leaf: &Hash,
        stored_chain: &Hash,
        columns: &IndexColumns,
    ) -> Result<(), VerifyError> {
        self.push(seq, body, stored_leaf, stored_chain)?;
        let r = check_columns(seq, body, columns);
        self.record(r)
    }

    fn push_row(
        &mut self,
        seq: u64,
        body: &[u8],
        stored_leaf: &Hash,
        stored_chain: &Hash,
    ) -> Result<(), VerifyError> {
        use VerifyErrorKind::*;
        let expected = self.frontier.size() + 1;
        if seq != expected {
            return Err(if seq == 0 {
                VerifyError::new(
                    Some(expected),
                    Malformed,
                    format!("event {expected}: the stored row has seq 0 (seqs start at 1)"),
                )
            } else if seq > expected {
                VerifyError::new(
                    Some(expected),
                    Missing,
                    format!(
                        "event {expected} missing: expected seq {expected}, found {seq} (a row was deleted or reordered)"
                    ),
                )
            } else {
                VerifyError::new(
                    Some(seq),
                    Reordered,
                    format!(
                        "event {seq} out of place: expected seq {expected}, found {seq} after event {} (rows were reordered or duplicated)",
                        expected - 1
                    ),
                )
            });
        }
        let leaf = merkle::leaf_hash(body);
        if leaf != *stored_leaf {
            return Err(VerifyError::new(
                Some(seq),
                Modified,
                format!("event {seq}: body was modified (leaf hash mismatch)"),
            ));
        }
        match body_seq(body) {
            Some(s) if s == seq => {}
            Some(s) => {
                return Err(VerifyError::new(
                    Some(seq),
                    Reordered,
                    format!(
                        "event {seq}: the row holds the body of event {s} (rows were reordered, or inserted or deleted and renumbered)"
                    ),
                ));
            }
            None => {
                return Err(VerifyError::new(
                    Some(seq),
                    Malformed,
                    format!(
                        "event {seq}: body is not a canonical version-1 event (no trailing \"seq\",\"ts\",\"v\")"
                    ),
                ));
            }
        }
        let chain = chain_hash(&self.prev_chain, &leaf);
        if chain != *stored_chain {
            return Err(VerifyError::new(
                Some(seq),
                BrokenChain,
                format!(
                    "event {seq}: hash chain broken (chain hash mismatch: an event before it was removed, inserted or re-hashed, or this row's chain hash was changed)"
                ),
            ));
        }
        self.prev_chain = chain;
        self.frontier.push(leaf);
        Ok(())
    }

    /// Checks a checkpoint note. Call it right after pushing the event with `seq == size`; a
    /// validly signed checkpoint beyond the pushed events means the log was truncated.
    pub fn checkpoint(&mut self, note: &str) -> Result<(), VerifyError> {
        self.check_failed()?;
        let r = self.check_checkpoint(note);
        self.record(r)
    }

    fn check_checkpoint(&mut self, note: &str) -> Result<(), VerifyError> {
        use VerifyErrorKind::*;
        let cp = Checkpoint::open_unverified(note)
            .map_err(|e| VerifyError::new(None, BadCheckpoint, format!("checkpoint: {e}")))?;
        let n = cp.size;
        Checkpoint::open(note, &self.key, &self.key_name).map_err(|e| {
            let kind = match e {
                AuditError::NoSignature { .. } | AuditError::BadSignature => BadSignature,
                _ => BadCheckpoint,
            };
            VerifyError::new(None, kind, format!("checkpoint at size {n}: {e}"))
        })?;
        if cp.origin != self.origin {
            return Err(VerifyError::new(
                None,
                BadCheckpoint,
                format!(
                    "checkpoint at size {n}: signed for log {:?}, not {:?}",
                    cp.origin, self.origin
                ),
            ));
        }
        let have = self.frontier.size();
        if n > have {
            let end = if have == 0 {
                "the log is empty".to_string()
            } else {
                format!("the log ends at event {have}")
            };
            return Err(VerifyError::new(
                Some(have + 1),
                Truncated,
                format!("log truncated: checkpoint signed at size {n} but {end}"),
            ));
        }
        if n < have {
            return Err(VerifyError::new(
                None,
                BadCheckpoint,
                format!(
                    "checkpoint at size {n}: out of order (it must come right after event {n}, but event {have} was already read)"
                ),
            ));
        }
        if cp.root != self.frontier.root() {
            return Err(VerifyError::new(
                None,
                RootMismatch,
                format!("checkpoint at size {n}: root mismatch (events before it were changed)"),
            ));
        }
        self.checkpoints += 1;
        self.last_checkpoint_size = n;
        Ok(())
    }

    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        self.check_failed()?;
        let events = self.frontier.size();
        Ok(VerifyReport {
            events,
            checkpoints: self.checkpoints,
            head: self.head(),
            last_checkpoint_size: self.last_checkpoint_size,
            unsigned_tail: events - self.last_checkpoint_size,
            recorded_sessions: 0,
            recorded_chunks: 0,
            purged_chunks: 0,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::{AuditRecord, NewEvent, decode_body, seal};
    use super::*;
    use ed25519_dalek::SigningKey;

    const NAME: &str = "breakglass/t";

    fn ev(i: u64) -> NewEvent {
        NewEvent {
            ts_ms: i as i64 - 3,
            kind: "k".into(),
            actor: None,
            grant_id: None,
            resource: None,
            // A nested "seq" and a string that looks like a body tail must not confuse body_seq.
            data: serde_json::json!({"i": i, "seq": 999, "s": ",\"seq\":7,\"ts\":1,\"v\":1}"}),
        }
    }

    fn log_of(evs: &[NewEvent]) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for e in evs {
            let prev = out.last().map(|r| Head {
                seq: r.seq,
                chain_hash: r.chain_hash,
            });
            out.push(seal(prev, e));
        }
        out
    }

    fn log(n: u64) -> Vec<AuditRecord> {
        log_of(&(0..n).map(ev).collect::<Vec<_>>())
    }

    fn sk() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn note_by(recs: &[AuditRecord], size: usize, key: &SigningKey) -> String {
        let leaves: Vec<Hash> = recs[..size].iter().map(|r| r.leaf_hash).collect();
        Checkpoint {
            origin: NAME.into(),
            size: size as u64,
            root: merkle::root(&leaves),
        }
        .sign(key, NAME)
    }

    fn note(recs: &[AuditRecord], size: usize) -> String {
        note_by(recs, size, &sk())
    }

    /// Feeds rows and checkpoints the way the store verifier does.
    fn run(recs: &[AuditRecord], cps: &[(u64, String)]) -> Result<VerifyReport, VerifyError> {
        let mut v = Verifier::new(sk().verifying_key(), NAME.into(), NAME.into());
        let mut cps = cps.iter().peekable();
        for r in recs {
            v.push(r.seq, &r.body, &r.leaf_hash, &r.chain_hash)?;
            while let Some((s, n)) = cps.peek() {
                if *s > r.seq {
                    break;
                }
                v.checkpoint(n)?;
                cps.next();
            }
        }
        for (_, n) in cps {
            v.checkpoint(n)?;
        }
        v.finish()
    }

    fn err(recs: &[AuditRecord], cps: &[(u64, String)]) -> (Option<u64>, VerifyErrorKind, String) {
        let e = run(recs, cps).unwrap_err();
        (e.seq, e.kind, e.to_string())
    }

    #[test]
    fn intact_log_verifies() {
        let recs = log(10);
        let cps = vec![(5, note(&recs, 5)), (8, note(&recs, 8))];
        let r = run(&recs, &cps).unwrap();
        assert_eq!((r.events, r.checkpoints), (10, 2));
        assert_eq!((r.last_checkpoint_size, r.unsigned_tail), (8, 2));
        assert_eq!(
            r.head,
            Some(Head {
                seq: 10,
                chain_hash: recs[9].chain_hash
            })
        );
        let empty = run(&[], &[]).unwrap();
        assert_eq!((empty.events, empty.head), (0, None));
    }

    #[test]
    fn modified_body() {
        let recs = log(10);
        let cps = vec![(10, note(&recs, 10))];
        let mut m = recs.clone();
        m[3].body = String::from_utf8(m[3].body.clone())
            .unwrap()
            .replace("\"i\":3", "\"i\":4")
            .into_bytes();
        let (seq, kind, msg) = err(&m, &cps);
        assert_eq!((seq, kind), (Some(4), VerifyErrorKind::Modified));
        assert_eq!(msg, "event 4: body was modified (leaf hash mismatch)");
    }

    #[test]
    fn deleted_row() {
        let recs = log(20);
        let cps = vec![(20, note(&recs, 20))];
        let mut d = recs.clone();
        d.remove(16);
        let (seq, kind, msg) = err(&d, &cps);
        assert_eq!((seq, kind), (Some(17), VerifyErrorKind::Missing));
        assert_eq!(
            msg,
            "event 17 missing: expected seq 17, found 18 (a row was deleted or reordered)"
        );
        // The first row deleted.
        let (seq, kind, _) = err(&recs[1..], &cps);
        assert_eq!((seq, kind), (Some(1), VerifyErrorKind::Missing));
    }

    #[test]
    fn inserted_row() {
        let recs = log(10);
        let cps = vec![(10, note(&recs, 10))];
        // A copy of event 5 inserted after it, later rows renumbered.
        let mut ins = recs.clone();
        ins.insert(5, recs[4].clone());
        for (i, x) in ins.iter_mut().enumerate() {
            x.seq = i as u64 + 1;
        }
        let (seq, kind, msg) = err(&ins, &cps);
        assert_eq!((seq, kind), (Some(6), VerifyErrorKind::Reordered));
        assert!(msg.contains("holds the body of event 5"), "{msg}");
        // A duplicate without renumbering.
        let mut dup = recs.clone();
        dup.insert(5, recs[4].clone());
        let (seq, kind, msg) = err(&dup, &cps);
        assert_eq!((seq, kind), (Some(5), VerifyErrorKind::Reordered));
        assert!(msg.starts_with("event 5 out of place"), "{msg}");
        // A forged event with a correct leaf and seq but a chain computed from nothing.
        let mut forged = recs.clone();
        let fake = seal(None, &ev(99));
        let body = String::from_utf8(fake.body)
            .unwrap()
            .replace("\"seq\":1,", "\"seq\":6,");
        forged[5].body = body.into_bytes();
        forged[5].leaf_hash = merkle::leaf_hash(&forged[5].body);
        let (seq, kind, _) = err(&forged, &cps);
        assert_eq!((seq, kind), (Some(6), VerifyErrorKind::BrokenChain));
    }

    #[test]
    fn reordered_rows() {
        let recs = log(10);
        let cps = vec![(10, note(&recs, 10))];
        // Rows stored in the wrong order (seq column intact): 1 2 4 3 5 ...
        let mut r = recs.clone();
        r.swap(2, 3);
        let (seq, kind, msg) = err(&r, &cps);
        assert_eq!((seq, kind), (Some(3), VerifyErrorKind::Missing));
        assert!(msg.contains("deleted or reordered"), "{msg}");
        // A row moved back: 1 2 3 5 6 4 ... is caught at 5; 1 2 3 4 5 6 3 is "out of place".
        let mut late = recs[..6].to_vec();
        late.push(recs[2].clone());
        let (seq, kind, _) = err(&late, &cps);
        assert_eq!((seq, kind), (Some(3), VerifyErrorKind::Reordered));
        // Bodies (with their hashes) swapped, seq numbers kept: the bodies say otherwise.
        let mut s = recs.clone();
        let (a, b) = (s[2].clone(), s[3].clone());
        s[2] = AuditRecord { seq: 3, ..b };
        s[3] = AuditRecord { seq: 4, ..a };
        let (seq, kind, msg) = err(&s, &cps);
        assert_eq!((seq, kind), (Some(3), VerifyErrorKind::Reordered));
        assert!(msg.contains("holds the body of event 4"), "{msg}");
        // A row with seq 0.
        let mut z = recs.clone();
        z[0].seq = 0;
        let (seq, kind, _) = err(&z, &cps);
        assert_eq!((seq, kind), (Some(1), VerifyErrorKind::Malformed));
        // u64::MAX is just "missing", no overflow.
        let mut big = recs.clone();
        big[1].seq = u64::MAX;
        assert_eq!(err(&big, &cps).1, VerifyErrorKind::Missing);
    }

    #[test]
    fn truncated_below_last_checkpoint() {
        let recs = log(1000);
        let cps = vec![(500, note(&recs, 500)), (1000, note(&recs, 1000))];
        let (seq, kind, msg) = err(&recs[..950], &cps);
        assert_eq!((seq, kind), (Some(951), VerifyErrorKind::Truncated));
        assert_eq!(
            msg,
            "log truncated: checkpoint signed at size 1000 but the log ends at event 950"
        );
        // Newest events deleted together with the checkpoints covering them: not detectable
        // from the log alone; the report says how much of the log is signed.
        let r = run(&recs[..1000], &cps[..1]).unwrap();
        assert_eq!((r.last_checkpoint_size, r.unsigned_tail), (500, 500));
    }

    #[test]
    fn bad_checkpoint_signature() {
        let recs = log(600);
        let other = SigningKey::from_bytes(&[4; 32]);
        let forged = note_by(&recs, 500, &other);
        let (seq, kind, msg) = err(&recs, &[(500, forged)]);
        assert_eq!((seq, kind), (None, VerifyErrorKind::BadSignature));
        assert!(
            msg.starts_with("checkpoint at size 500: not signed by"),
            "{msg}"
        );
        // Our key, wrong bytes.
        let good = note(&recs, 500);
        let mut lines: Vec<&str> = good.lines().collect();
        let sig = lines[4].to_string();
        let (head, b64) = sig.rsplit_once(' ').unwrap();
        let mut b64 = b64.to_string();
        let c = if b64.as_bytes()[20] == b'A' { "B" } else { "A" };
        b64.replace_range(20..21, c);
        let bad_sig = format!("{head} {b64}");
        lines[4] = &bad_sig;
        let bad = lines.join("\n") + "\n";
        let (_, kind, msg) = err(&recs, &[(500, bad)]);
        assert_eq!(kind, VerifyErrorKind::BadSignature);
        assert_eq!(msg, "checkpoint at size 500: signature invalid");
        // Edited size in a signed note.
        let edited = good.replacen("\n500\n", "\n400\n", 1);
        let (_, kind, msg) = err(&recs, &[(400, edited)]);
        assert_eq!(kind, VerifyErrorKind::BadSignature);
        assert_eq!(msg, "checkpoint at size 400: signature invalid");
        // Garbage.
        let (_, kind, _) = err(&recs, &[(500, "garbage".into())]);
        assert_eq!(kind, VerifyErrorKind::BadCheckpoint);
    }

    #[test]
    fn tampered_checkpoint_root_and_rehashed_history() {
        let recs = log(600);
        // A validly signed checkpoint whose root is not the log's.
        let cp = Checkpoint {
            origin: NAME.into(),
            size: 500,
            root: [1; 32],
        }
        .sign(&sk(), NAME);
        let (seq, kind, msg) = err(&recs, &[(500, cp)]);
        assert_eq!((seq, kind), (None, VerifyErrorKind::RootMismatch));
        assert_eq!(
            msg,
            "checkpoint at size 500: root mismatch (events before it were changed)"
        );
        // The attacker rewrites event 4 and recomputes every hash after it.
        let cps = vec![(500, note(&recs, 500))];
        let mut evs: Vec<NewEvent> = recs
            .iter()
            .map(|r| {
                let d = decode_body(&r.body).unwrap();
                NewEvent {
                    ts_ms: d.ts_ms,
                    kind: d.kind,
                    actor: d.actor,
                    grant_id: d.grant_id,
                    resource: d.resource,
                    data: d.data,
                }
            })
            .collect();
        evs[3].kind = "forged".into();
        let forged = log_of(&evs);
        assert_eq!(err(&forged, &cps).1, VerifyErrorKind::RootMismatch);
    }

    #[test]
    fn checkpoint_for_another_log_or_out_of_order() {
        let recs = log(10);
        let foreign = Checkpoint {
            origin: "elsewhere".into(),
            size: 5,
            root: merkle::root(&recs[..5].iter().map(|r| r.leaf_hash).collect::<Vec<_>>()),
        }
        .sign(&sk(), NAME);
        let (_, kind, msg) = err(&recs, &[(5, foreign)]);
        assert_eq!(kind, VerifyErrorKind::BadCheckpoint);
        assert!(msg.contains("signed for log"), "{msg}");
        // A checkpoint fed late.
        let mut v = Verifier::new(sk().verifying_key(), NAME.into(), NAME.into());
        for r in &recs[..6] {
            v.push(r.seq, &r.body, &r.leaf_hash, &r.chain_hash).unwrap();
        }
        let e = v.checkpoint(&note(&recs, 5)).unwrap_err();
        assert!(e.message.contains("out of order"), "{e}");
        // Every later call reports the same first error.
        let r = &recs[6];
        assert_eq!(
            v.push(r.seq, &r.body, &r.leaf_hash, &r.chain_hash)
                .unwrap_err(),
            e
        );
        assert_eq!(v.finish().unwrap_err(), e);
    }

    #[test]
    fn non_canonical_body_is_malformed() {
        let body = br#"{"seq":1}"#;
        let leaf = merkle::leaf_hash(body);
        let chain = chain_hash(&[0; 32], &leaf);
        let mut v = Verifier::new(sk().verifying_key(), NAME.into(), NAME.into());
        let e = v.push(1, body, &leaf, &chain).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(1), VerifyErrorKind::Malformed));
    }

    /// `cargo test --release -p breakglass-core verifier_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark: run in release mode"]
    fn verifier_throughput() {
        let n = 1_000_000u64;
        let mut recs = Vec::with_capacity(n as usize);
        let mut prev = None;
        for i in 0..n {
            let r = seal(
                prev,
                &NewEvent {
                    ts_ms: 1_790_000_000_000 + i as i64,
                    kind: "grant.requested".into(),
                    actor: Some("bob".into()),
                    grant_id: Some("g-9f2c41d07ab35e18".into()),
                    resource: Some("prod-db".into()),
                    data: serde_json::json!({"approval": "auto", "duration_secs": 1800, "mfa": true, "policy": "dba-emergency", "reason": "orders table locked, checkout down", "ticket": "INC-4711"}),
                },
            );
            prev = Some(Head {
                seq: r.seq,
                chain_hash: r.chain_hash,
            });
            recs.push(r);
        }
        let mut f = Frontier::new();
        let mut cps = Vec::new();
        for r in &recs {
            f.push(r.leaf_hash);
            if r.seq % 1000 == 0 {
                let cp = Checkpoint {
                    origin: NAME.into(),
                    size: r.seq,
                    root: f.root(),
                };
                cps.push((r.seq, cp.sign(&sk(), NAME)));
            }
        }
        let t = std::time::Instant::now();
        let rep = run(&recs, &cps).unwrap();
        let dt = t.elapsed();
        assert_eq!((rep.events, rep.checkpoints), (n, 1000));
        let rate = n as f64 / dt.as_secs_f64();
        println!(
            "verified {n} events ({} bytes each) and 1000 checkpoints in {dt:?}: {rate:.0} events/s",
            recs[0].body.len()
        );
    }
}
