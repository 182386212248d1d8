//! RFC 6962 / RFC 9162 Merkle tree: leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ l ‖ r),
//! the split is the largest power of two smaller than the size. Inclusion and consistency
//! proofs, and an incremental [`Frontier`] (compact range) so a log of any size keeps only
//! O(log n) hashes to compute its root.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle Tree Hash over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let (l, r) = leaves.split_at(split(n));
            node_hash(&root(l), &root(r))
        }
    }
}

/// The audit path of leaf `index` in the tree of all `leaves` (empty if out of range).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Vec<Hash> {
    let Ok(m) = usize::try_from(index) else {
        return Vec::new();
    };
    if m >= leaves.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    path(m, leaves, &mut out);
    out
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    let (l, r) = leaves.split_at(k);
    if m < k {
        path(m, l, out);
        out.push(root(r));
    } else {
        path(m - k, r, out);
        out.push(root(l));
    }
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Proof that the tree of the first `old_size` leaves is a prefix of the tree of all `leaves`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Vec<Hash> {
    let Ok(m) = usize::try_from(old_size) else {
        return Vec::new();
    };
    if m == 0 || m >= leaves.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out);
    out
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    let (l, r) = leaves.split_at(k);
    if m <= k {
        subproof(m, l, whole, out);
        out.push(root(r));
    } else {
        subproof(m - k, r, false, out);
        out.push(root(l));
    }
}

/// RFC 9162 §2.1.4.2.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// An append-only tree that keeps only the roots of its perfect subtrees (at most 64).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (height, hash), heights strictly decreasing from left to right.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut cur = (0u32, leaf);
        while let Some(&(h, top)) = self.stack.last() {
            if h != cur.0 {
                break;
            }
            self.stack.pop();
            cur = (h + 1, node_hash(&top, &cur.1));
        }
        self.stack.push(cur);
        self.size += 1;
    }

    /// The RFC 6962 root of everything pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, h) in it {
            acc = node_hash(h, &acc);
        }
        acc
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    const INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        INPUTS
            .iter()
            .map(|x| leaf_hash(&hex::decode(x).unwrap()))
            .collect()
    }

    #[test]
    fn rfc6962_roots() {
        let l = leaves();
        let mut f = Frontier::new();
        assert_eq!(f.root(), h(ROOTS[0]));
        for n in 1..=8 {
            assert_eq!(root(&l[..n]), h(ROOTS[n]), "size {n}");
            f.push(l[n - 1]);
            assert_eq!(f.root(), h(ROOTS[n]), "frontier size {n}");
        }
    }

    #[test]
    fn rfc6962_inclusion_vectors() {
        let l = leaves();
        let p0 = [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ];
        let p5 = [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ];
        let root8 = h(ROOTS[8]);
        for (idx, want) in [(0u64, p0), (5, p5)] {
            let proof = inclusion_proof(&l, idx);
            assert_eq!(proof, want.map(h).to_vec());
            assert!(verify_inclusion(&l[idx as usize], idx, 8, &proof, &root8));
            assert!(!verify_inclusion(
                &l[idx as usize],
                idx + 1,
                8,
                &proof,
                &root8
            ));
        }
        let p = inclusion_proof(&l[..3], 2);
        assert_eq!(p, vec![h(ROOTS[2])]);
    }

    #[test]
    fn transparency_dev_inclusion_vectors() {
        // (1-based leaf, size, proof) from transparency-dev/merkle proof/verify_test.go.
        let l = leaves();
        let vectors: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                3,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                2,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (leaf, size, want) in vectors {
            let (i, n) = (leaf - 1, size as usize);
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(inclusion_proof(&l[..n], i), want, "leaf {leaf} size {size}");
            let r = h(ROOTS[n]);
            let lh = l[i as usize];
            assert!(verify_inclusion(&lh, i, size, &want, &r));
            // The corruptions transparency-dev checks must all fail.
            let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
            let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
                (i.wrapping_sub(1), size, lh, r, want.clone()),
                (i + 1, size, lh, r, want.clone()),
                (i ^ 2, size, lh, r, want.clone()),
                (i, size * 2, lh, r, want.clone()),
                (i, size / 2, lh, r, want.clone()),
                (i, size, leaf_hash(b"WrongLeaf"), r, want.clone()),
                (i, size, lh, empty_root(), want.clone()),
                (i, size, lh, some, want.clone()),
                (i, size, lh, r, [want.clone(), vec![r]].concat()),
                (i, size, lh, r, [vec![r], want.clone()].concat()),
                (i, size, lh, r, [want.clone(), vec![some]].concat()),
            ];
            for j in 0..want.len() {
                let mut w = want.clone();
                w[j][0] ^= 8;
                probes.push((i, size, lh, r, w));
            }
            if !want.is_empty() {
                probes.push((i, size, lh, r, want[..want.len() - 1].to_vec()));
            }
            for (k, (pi, ps, pl, pr, pp)) in probes.into_iter().enumerate() {
                assert!(
                    !verify_inclusion(&pl, pi, ps, &pp, &pr),
                    "probe {k} verified for leaf {leaf} size {size}"
                );
            }
        }
        assert!(!verify_inclusion(&l[0], 0, 0, &[], &empty_root()));
    }

    #[test]
    fn transparency_dev_consistency_vectors() {
        let l = leaves();
        let vectors: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (m, n, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(consistency_proof(&l[..n as usize], m), want, "{m} -> {n}");
            let (r1, r2) = (h(ROOTS[m as usize]), h(ROOTS[n as usize]));
            assert!(verify_consistency(m, n, &r1, &r2, &want), "{m} -> {n}");
            if want.is_empty() {
                continue;
            }
            let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
            let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
                (m - 1, n, r1, r2, want.clone()),
                (m + 1, n, r1, r2, want.clone()),
                (m ^ 2, n, r1, r2, want.clone()),
                (m, n * 2, r1, r2, want.clone()),
                (m, n / 2, r1, r2, want.clone()),
                (m, n, some, r2, want.clone()),
                (m, n, r1, some, want.clone()),
                (m, n, r2, r1, want.clone()),
                (m, n, r1, r2, vec![]),
                (m, n, r1, r2, [want.clone(), vec![r1]].concat()),
                (m, n, r1, r2, [want.clone(), vec![r2]].concat()),
                (m, n, r1, r2, [vec![r1], want.clone()].concat()),
                (m, n, r1, r2, [vec![r2], want.clone()].concat()),
                (m, n, r1, r2, [vec![want[0]], want.clone()].concat()),
                (m, n, r1, r2, want[..want.len() - 1].to_vec()),
            ];
            for j in 0..want.len() {
                let mut w = want.clone();
                w[j][0] ^= 16;
                probes.push((m, n, r1, r2, w));
            }
            for (k, (a, b, x, y, p)) in probes.into_iter().enumerate() {
                assert!(
                    !verify_consistency(a, b, &x, &y, &p),
                    "probe {k} verified for {m} -> {n}"
                );
            }
        }
        // Edge cases, as transparency-dev: size 0 is consistent with anything given no proof.
        let (a, b) = (h(ROOTS[1]), h(ROOTS[2]));
        assert!(verify_consistency(0, 0, &a, &a, &[]));
        assert!(!verify_consistency(0, 0, &a, &b, &[]));
        assert!(verify_consistency(0, 1, &a, &b, &[]));
        assert!(!verify_consistency(0, 1, &a, &b, &[a]));
        assert!(!verify_consistency(1, 1, &a, &a, &[a]));
        assert!(!verify_consistency(2, 1, &a, &b, &[]));
        assert!(!verify_consistency(1, 2, &a, &b, &[]));
    }

    /// An independent reference: the RFC 6962 definitions written directly over the data.
    fn ref_root(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Sha256::digest(b"").into(),
            1 => d[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                let mut x = vec![1u8];
                x.extend_from_slice(&ref_root(&d[..k]));
                x.extend_from_slice(&ref_root(&d[k..]));
                Sha256::digest(&x).into()
            }
        }
    }

    fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        if m < k {
            [ref_path(m, &d[..k]), vec![ref_root(&d[k..])]].concat()
        } else {
            [ref_path(m - k, &d[k..]), vec![ref_root(&d[..k])]].concat()
        }
    }

    fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![ref_root(d)] };
        }
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        if m <= k {
            [ref_subproof(m, &d[..k], b), vec![ref_root(&d[k..])]].concat()
        } else {
            [ref_subproof(m - k, &d[k..], false), vec![ref_root(&d[..k])]].concat()
        }
    }

    fn hashes(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn frontier_at_every_size_up_to_1100() {
        let l = hashes(1100);
        let mut f = Frontier::new();
        for (i, x) in l.iter().enumerate() {
            f.push(*x);
            assert_eq!(f.size(), i as u64 + 1);
            assert_eq!(f.root(), ref_root(&l[..=i]), "size {}", i + 1);
        }
    }

    proptest! {
        #[test]
        fn frontier_and_root_match_reference(n in 0usize..600) {
            let l = hashes(n);
            let mut f = Frontier::new();
            for x in &l { f.push(*x); }
            prop_assert_eq!(f.root(), ref_root(&l));
            prop_assert_eq!(root(&l), ref_root(&l));
        }

        #[test]
        fn proofs_verify_and_tampering_fails(n in 1usize..300, i in 0usize..300, m in 1usize..300) {
            let l = hashes(n);
            let r = root(&l);
            let i = i % n;
            let p = inclusion_proof(&l, i as u64);
            prop_assert_eq!(&p, &ref_path(i, &l));
            prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &p, &r));
            let mut bad = l[i];
            bad[0] ^= 1;
            prop_assert!(!verify_inclusion(&bad, i as u64, n as u64, &p, &r));
            if n > 1 {
                prop_assert!(!verify_inclusion(&l[i], ((i + 1) % n) as u64, n as u64, &p, &r));
            }
            let m = 1 + (m - 1) % n;
            let old = root(&l[..m]);
            let c = consistency_proof(&l, m as u64);
            if m < n {
                prop_assert_eq!(&c, &ref_subproof(m, &l, true));
            }
            prop_assert!(verify_consistency(m as u64, n as u64, &old, &r, &c));
            if m < n {
                let mut bad_old = old;
                bad_old[5] ^= 1;
                prop_assert!(!verify_consistency(m as u64, n as u64, &bad_old, &r, &c));
                let mut bad_c = c.clone();
                bad_c[0][0] ^= 1;
                prop_assert!(!verify_consistency(m as u64, n as u64, &old, &r, &bad_c));
            }
        }
    }
}
