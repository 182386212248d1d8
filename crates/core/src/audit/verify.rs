//! The verifier: fed stored rows in order and the signed checkpoints, it recomputes every leaf
//! and chain link, rebuilds the Merkle tree, and checks each checkpoint's signature and root.
//! It stops at the first problem and names the event.

use super::merkle::{self, Frontier, Hash};
use super::{Checkpoint, Head, chain_hash};
use ed25519_dalek::VerifyingKey;
use thiserror::Error;

/// What kind of damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyErrorKind {
    Modified,
    Missing,
    Reordered,
    BrokenChain,
    Truncated,
    BadCheckpoint,
    Malformed,
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
}

pub struct Verifier {
    key: VerifyingKey,
    key_name: String,
    origin: String,
    frontier: Frontier,
    prev_chain: Hash,
    checkpoints: u64,
    last_checkpoint_size: u64,
}

/// The top-level `"seq"` of a canonical body. Keys are sorted, and after `seq` come only `ts`
/// and `v` (numbers), so the last `"seq":` in the text is the top-level one (a quote inside
/// a string value is always escaped).
fn body_seq(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    let pos = body.windows(KEY.len()).rposition(|w| w == KEY)?;
    let digits = body.get(pos + KEY.len()..)?;
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(digits.get(..end)?).ok()?.parse().ok()
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
        }
    }

    /// Events verified so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn push(
        &mut self,
        seq: u64,
        body: &[u8],
        stored_leaf: &Hash,
        stored_chain: &Hash,
    ) -> Result<(), VerifyError> {
        let expected = self.frontier.size() + 1;
        if seq > expected {
            return Err(VerifyError::new(
                Some(expected),
                VerifyErrorKind::Missing,
                format!(
                    "event {expected} is missing: the next stored event is {seq} (a row was deleted)"
                ),
            ));
        }
        if seq < expected {
            return Err(VerifyError::new(
                Some(seq),
                VerifyErrorKind::Reordered,
                format!(
                    "event {seq} appears again after event {} (rows inserted or reordered)",
                    expected - 1
                ),
            ));
        }
        let leaf = merkle::leaf_hash(body);
        if leaf != *stored_leaf {
            return Err(VerifyError::new(
                Some(seq),
                VerifyErrorKind::Modified,
                format!(
                    "event {seq}: body was modified (its hash does not match the recorded leaf hash)"
                ),
            ));
        }
        match body_seq(body) {
            Some(s) if s == seq => {}
            Some(s) => {
                return Err(VerifyError::new(
                    Some(seq),
                    VerifyErrorKind::Reordered,
                    format!(
                        "event {seq}: the stored body is event {s} (rows inserted, renumbered or reordered)"
                    ),
                ));
            }
            None => {
                return Err(VerifyError::new(
                    Some(seq),
                    VerifyErrorKind::Malformed,
                    format!("event {seq}: body has no sequence number"),
                ));
            }
        }
        let chain = chain_hash(&self.prev_chain, &leaf);
        if chain != *stored_chain {
            return Err(VerifyError::new(
                Some(seq),
                VerifyErrorKind::BrokenChain,
                format!(
                    "event {seq}: hash chain broken (the event before it was changed, removed or inserted)"
                ),
            ));
        }
        self.prev_chain = chain;
        self.frontier.push(leaf);
        Ok(())
    }

    /// Checks a checkpoint. Call it right after pushing the event with `seq == size`; a
    /// checkpoint beyond the pushed events means the log was truncated.
    pub fn checkpoint(&mut self, note: &str) -> Result<(), VerifyError> {
        let cp = Checkpoint::open(note, &self.key, &self.key_name).map_err(|e| {
            VerifyError::new(
                None,
                VerifyErrorKind::BadCheckpoint,
                format!("checkpoint: {e}"),
            )
        })?;
        if cp.origin != self.origin {
            return Err(VerifyError::new(
                None,
                VerifyErrorKind::BadCheckpoint,
                format!(
                    "checkpoint at size {} is for log {:?}, not {:?}",
                    cp.size, cp.origin, self.origin
                ),
            ));
        }
        let have = self.frontier.size();
        if cp.size > have {
            return Err(VerifyError::new(
                Some(have + 1),
                VerifyErrorKind::Truncated,
                format!(
                    "log truncated: a checkpoint signed at size {} but the log ends at event {have}",
                    cp.size
                ),
            ));
        }
        if cp.size < have || cp.size < self.last_checkpoint_size {
            return Err(VerifyError::new(
                None,
                VerifyErrorKind::BadCheckpoint,
                format!(
                    "checkpoint at size {} is out of order (already at event {have})",
                    cp.size
                ),
            ));
        }
        if cp.root != self.frontier.root() {
            return Err(VerifyError::new(
                None,
                VerifyErrorKind::BadCheckpoint,
                format!(
                    "checkpoint at size {}: root mismatch (events up to {} were changed and re-hashed)",
                    cp.size, cp.size
                ),
            ));
        }
        self.checkpoints += 1;
        self.last_checkpoint_size = cp.size;
        Ok(())
    }

    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        let events = self.frontier.size();
        Ok(VerifyReport {
            events,
            checkpoints: self.checkpoints,
            head: (events > 0).then_some(Head {
                seq: events,
                chain_hash: self.prev_chain,
            }),
            last_checkpoint_size: self.last_checkpoint_size,
            unsigned_tail: events - self.last_checkpoint_size,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::{AuditRecord, NewEvent, seal};
    use super::*;
    use ed25519_dalek::SigningKey;

    const NAME: &str = "breakglass/t";

    fn log(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| Head {
                seq: r.seq,
                chain_hash: r.chain_hash,
            });
            out.push(seal(
                prev,
                &NewEvent {
                    ts_ms: i as i64,
                    kind: "k".into(),
                    actor: None,
                    grant_id: None,
                    resource: None,
                    data: serde_json::json!({"i": i, "seq": 999}),
                },
            ));
        }
        out
    }

    fn sk() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn note(recs: &[AuditRecord], size: usize) -> String {
        let leaves: Vec<Hash> = recs[..size].iter().map(|r| r.leaf_hash).collect();
        Checkpoint {
            origin: NAME.into(),
            size: size as u64,
            root: merkle::root(&leaves),
        }
        .sign(&sk(), NAME)
    }

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

    #[test]
    fn intact_log_verifies() {
        let recs = log(10);
        let cps = vec![(5, note(&recs, 5)), (10, note(&recs, 10))];
        let r = run(&recs, &cps).unwrap();
        assert_eq!((r.events, r.checkpoints, r.unsigned_tail), (10, 2, 0));
        assert_eq!(body_seq(&recs[3].body), Some(4));
    }

    #[test]
    fn modified_deleted_inserted_reordered_truncated() {
        let recs = log(10);
        let cps = vec![(10, note(&recs, 10))];

        let mut m = recs.clone();
        m[3].body = String::from_utf8(m[3].body.clone())
            .unwrap()
            .replace("\"i\":3", "\"i\":4")
            .into_bytes();
        let e = run(&m, &cps).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(4), VerifyErrorKind::Modified));

        let mut d = recs.clone();
        d.remove(6);
        let e = run(&d, &cps).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(7), VerifyErrorKind::Missing));

        // Swap two bodies (with their hashes) but keep the row numbers: the bodies say otherwise.
        let mut r = recs.clone();
        let (a, b) = (r[2].clone(), r[3].clone());
        r[2] = AuditRecord { seq: 3, ..b };
        r[3] = AuditRecord { seq: 4, ..a };
        let e = run(&r, &cps).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(3), VerifyErrorKind::Reordered));

        // An inserted copy with renumbering.
        let mut ins = recs.clone();
        ins.insert(
            5,
            AuditRecord {
                seq: 6,
                ..recs[4].clone()
            },
        );
        for (i, x) in ins.iter_mut().enumerate().skip(6) {
            x.seq = i as u64 + 1;
        }
        let e = run(&ins, &cps).unwrap_err();
        assert_eq!(e.seq, Some(6));

        let e = run(&recs[..8], &cps).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(9), VerifyErrorKind::Truncated));
        assert!(e.to_string().contains("truncated"));
    }

    #[test]
    fn rehashed_history_is_caught_by_the_checkpoint() {
        let recs = log(10);
        let cps = vec![(10, note(&recs, 10))];
        // The attacker rewrites event 4 and recomputes every hash after it.
        let mut evs: Vec<NewEvent> = recs
            .iter()
            .map(|r| {
                let d = super::super::decode_body(&r.body).unwrap();
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
        let mut forged: Vec<AuditRecord> = Vec::new();
        for e in &evs {
            let prev = forged.last().map(|r| Head {
                seq: r.seq,
                chain_hash: r.chain_hash,
            });
            forged.push(seal(prev, e));
        }
        let e = run(&forged, &cps).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::BadCheckpoint);
        assert!(e.to_string().contains("root mismatch"));
        // A checkpoint signed by someone else is refused.
        let other = SigningKey::from_bytes(&[4; 32]);
        let leaves: Vec<Hash> = recs.iter().map(|r| r.leaf_hash).collect();
        let fake = Checkpoint {
            origin: NAME.into(),
            size: 10,
            root: merkle::root(&leaves),
        }
        .sign(&other, NAME);
        let e = run(&recs, &[(10, fake)]).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::BadCheckpoint);
    }
}
