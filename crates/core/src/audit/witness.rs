//! Checking a log against checkpoints a witness kept (copies made off the host as they were
//! signed): each copy's signature, then an RFC 6962 consistency proof from it to the log's
//! current tree. A log truncated, or rewritten with every hash recomputed, after a witnessed
//! checkpoint fails here even when its own newest checkpoints were deleted with it.

use super::merkle::{self, Hash, node_hash};
use super::verify::{VerifyError, VerifyErrorKind};
use super::{AuditError, Checkpoint};
use ed25519_dalek::VerifyingKey;

/// The Merkle tree of a whole log with the root of every perfect subtree kept (2n hashes), so
/// that each consistency proof costs O(log n) instead of rehashing the log.
pub struct Tree {
    /// `levels[h][i]`: the root of the perfect subtree of 2^h leaves starting at leaf i·2^h.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(last) = levels.last() {
            if last.len() < 2 {
                break;
            }
            let next: Vec<Hash> = last
                .chunks_exact(2)
                .map(|p| match p {
                    [l, r] => node_hash(l, r),
                    _ => merkle::empty_root(),
                })
                .collect();
            levels.push(next);
        }
        Tree { levels }
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root of leaves `start..start + n`, where the range is one of the subtrees RFC 6962's
    /// recursion visits (`start` a multiple of the largest power of two ≤ n).
    fn range_root(&self, start: usize, n: usize) -> Hash {
        match n {
            0 => merkle::empty_root(),
            n if n.is_power_of_two() && start.is_multiple_of(n) => {
                let h = n.trailing_zeros() as usize;
                self.levels
                    .get(h)
                    .and_then(|l| l.get(start / n))
                    .copied()
                    .unwrap_or_else(merkle::empty_root)
            }
            n => {
                let k = split(n);
                node_hash(
                    &self.range_root(start, k),
                    &self.range_root(start + k, n - k),
                )
            }
        }
    }

    pub fn root(&self) -> Hash {
        self.range_root(0, self.size() as usize)
    }

    /// RFC 9162 §2.1.4.1 proof that the first `old_size` leaves are a prefix of this tree
    /// (empty when `old_size` is 0 or not smaller than the tree).
    pub fn consistency_proof(&self, old_size: u64) -> Vec<Hash> {
        let n = self.size() as usize;
        let Ok(m) = usize::try_from(old_size) else {
            return Vec::new();
        };
        if m == 0 || m >= n {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.subproof(m, 0, n, true, &mut out);
        out
    }

    fn subproof(&self, m: usize, start: usize, n: usize, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.range_root(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, whole, out);
            out.push(self.range_root(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.range_root(start, k));
        }
    }
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Checks one witnessed checkpoint note (`file` names it in messages) against the log whose
/// tree is `tree`: signed by `key` under `origin`, for this log, not beyond its end, and the
/// log's tree consistent with it. Returns the checkpoint.
pub fn check(
    tree: &Tree,
    key: &VerifyingKey,
    origin: &str,
    file: &str,
    note: &str,
) -> Result<Checkpoint, VerifyError> {
    use VerifyErrorKind::*;
    let cp = Checkpoint::open_unverified(note).map_err(|e| {
        VerifyError::new(
            None,
            Malformed,
            format!("witness copy {file} is not a checkpoint note: {e}"),
        )
    })?;
    let m = cp.size;
    Checkpoint::open(note, key, origin).map_err(|e| {
        let kind = match e {
            AuditError::NoSignature { .. } | AuditError::BadSignature => BadSignature,
            _ => BadCheckpoint,
        };
        VerifyError::new(
            None,
            kind,
            format!(
                "witness copy {file}: its checkpoint at size {m} does not verify with the audit key ({e}): the copy was forged or edited"
            ),
        )
    })?;
    if cp.origin != origin {
        return Err(VerifyError::new(
            None,
            BadCheckpoint,
            format!(
                "witness copy {file}: checkpoint of log {:?}, not {origin:?}",
                cp.origin
            ),
        ));
    }
    let n = tree.size();
    if m > n {
        return Err(VerifyError::new(
            Some(n + 1),
            Truncated,
            format!(
                "log truncated: the witnessed checkpoint at size {m} ({file}) is beyond the log's end ({n} events): events {}..{m} were deleted",
                n + 1
            ),
        ));
    }
    let proof = tree.consistency_proof(m);
    if !merkle::verify_consistency(m, n, &cp.root, &tree.root(), &proof) {
        return Err(VerifyError::new(
            None,
            RootMismatch,
            format!(
                "log rewritten: the witnessed checkpoint at size {m} ({file}) is not a prefix of the log's tree of {n} events (the RFC 6962 consistency proof fails): events 1..{m} are not the ones that were signed"
            ),
        ));
    }
    Ok(cp)
}

/// What the witness copies showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessReport {
    /// Copies checked.
    pub checked: u64,
    /// The largest witnessed tree size.
    pub newest_size: u64,
}

/// Checks every copy (`(file name, note)`), smallest tree first; stops at the first problem.
pub fn check_all(
    tree: &Tree,
    key: &VerifyingKey,
    origin: &str,
    copies: &[(String, String)],
) -> Result<WitnessReport, VerifyError> {
    let mut sized: Vec<(u64, &String, &String)> = copies
        .iter()
        .map(|(f, n)| {
            let size = Checkpoint::open_unverified(n).map_or(0, |c| c.size);
            (size, f, n)
        })
        .collect();
    sized.sort();
    let mut newest = 0;
    for (_, file, note) in &sized {
        newest = newest.max(check(tree, key, origin, file, note)?.size);
    }
    Ok(WitnessReport {
        checked: sized.len() as u64,
        newest_size: newest,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    fn note(l: &[Hash], key: &SigningKey) -> String {
        Checkpoint {
            origin: "bg/t".into(),
            size: l.len() as u64,
            root: merkle::root(l),
        }
        .sign(key, "bg/t")
    }

    proptest! {
        /// The cached tree gives the same roots and proofs as the reference functions.
        #[test]
        fn cached_proofs_equal_the_reference(n in 0usize..70, m in 0u64..72) {
            let l = leaves(n);
            let t = Tree::new(l.clone());
            prop_assert_eq!(t.root(), merkle::root(&l));
            prop_assert_eq!(t.consistency_proof(m), merkle::consistency_proof(&l, m));
        }
    }

    #[test]
    fn intact_truncated_rewritten_forged() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let vk = key.verifying_key();
        let l = leaves(20);
        let copies: Vec<(String, String)> = [5usize, 13, 20]
            .iter()
            .map(|&m| (format!("cp-{m}"), note(&l[..m], &key)))
            .collect();
        let r = check_all(&Tree::new(l.clone()), &vk, "bg/t", &copies).unwrap();
        assert_eq!((r.checked, r.newest_size), (3, 20));
        // Grown since: still consistent.
        let mut longer = l.clone();
        longer.extend(leaves(30).into_iter().skip(20));
        assert!(check_all(&Tree::new(longer), &vk, "bg/t", &copies).is_ok());
        // Truncated to 15: the copy at 20 names the deletion.
        let e = check_all(&Tree::new(l[..15].to_vec()), &vk, "bg/t", &copies).unwrap_err();
        assert_eq!((e.kind, e.seq), (VerifyErrorKind::Truncated, Some(16)));
        assert!(e.message.contains("size 20 (cp-20)"), "{e}");
        // Event 9 rewritten (every hash recomputed): the copy at 13 is the first that fails.
        let mut rewritten = l.clone();
        rewritten[8] = merkle::leaf_hash(b"other");
        let e = check_all(&Tree::new(rewritten), &vk, "bg/t", &copies).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::RootMismatch);
        assert!(e.message.contains("size 13 (cp-13)"), "{e}");
        // A copy with an edited root, or signed by another key: forged.
        let mut forged = copies[0].1.clone();
        let root_line = forged.lines().nth(2).unwrap().to_string();
        let other_root = base64_of(&merkle::root(&l[..4]));
        forged = forged.replace(&root_line, &other_root);
        let e = check(&Tree::new(l.clone()), &vk, "bg/t", "f", &forged).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::BadSignature, "{e}");
        assert!(e.message.contains("forged or edited"), "{e}");
        let stranger = note(&l[..5], &SigningKey::from_bytes(&[4; 32]));
        let e = check(&Tree::new(l.clone()), &vk, "bg/t", "g", &stranger).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::BadSignature, "{e}");
        let e = check(&Tree::new(l), &vk, "bg/t", "h", "hello").unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::Malformed, "{e}");
    }

    fn base64_of(h: &Hash) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(h)
    }
}
