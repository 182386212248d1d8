//! Checking stored recordings against the audit trail: every chunk must be the one whose digest
//! a `recording.chunk` event recorded (same session, same number, same bytes), none may be
//! missing, none may be extra. Run after the chain itself verified, so the events are genuine.

use super::chunk_digest;
use crate::audit::{VerifyError, VerifyErrorKind};
use std::collections::BTreeMap;

/// The audit event kind that carries a chunk's digest.
pub const CHUNK_EVENT: &str = "recording.chunk";

#[derive(Default)]
pub struct RecordingVerifier {
    /// (session, chunk) → (digest, bytes, audit seq) from the audit trail.
    expected: BTreeMap<(String, u64), ([u8; 32], u64, u64)>,
    pub sessions: u64,
    pub chunks: u64,
    /// Chunks whose payload retention deleted (checked by digest only).
    pub purged: u64,
}

fn err(message: String) -> VerifyError {
    VerifyError::new(None, VerifyErrorKind::Recording, message)
}

impl RecordingVerifier {
    /// Takes the data of a `recording.chunk` event (audit event `seq`).
    pub fn expect(&mut self, seq: u64, data: &serde_json::Value) -> Result<(), VerifyError> {
        let session = data.get("session").and_then(|v| v.as_str());
        let chunk = data.get("chunk").and_then(|v| v.as_u64());
        let digest = data
            .get("sha256")
            .and_then(|v| v.as_str())
            .and_then(|h| hex::decode(h).ok())
            .and_then(|d| <[u8; 32]>::try_from(d).ok());
        let bytes = data.get("bytes").and_then(|v| v.as_u64()).unwrap_or(0);
        let (Some(session), Some(chunk), Some(digest)) = (session, chunk, digest) else {
            return Err(VerifyError::new(
                Some(seq),
                VerifyErrorKind::Malformed,
                format!("audit event {seq} ({CHUNK_EVENT}) lacks its session, chunk or sha256"),
            ));
        };
        self.expected
            .insert((session.to_string(), chunk), (digest, bytes, seq));
        Ok(())
    }

    /// Checks one stored chunk (`digest` is the stored digest column, `payload` None when
    /// retention deleted it).
    pub fn chunk(
        &mut self,
        session: &str,
        seq: u64,
        digest: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        let Some((want, bytes, ev)) = self.expected.remove(&(session.to_string(), seq)) else {
            return Err(err(format!(
                "recording of session {session}: chunk {seq} is not in the audit trail (added or renumbered after the fact)"
            )));
        };
        if digest != want {
            return Err(err(format!(
                "recording of session {session}: chunk {seq} does not match audit event {ev} (its stored digest was changed)"
            )));
        }
        match payload {
            Some(p) => {
                if chunk_digest(session, seq, p) != want || p.len() as u64 != bytes {
                    return Err(err(format!(
                        "recording of session {session}: chunk {seq} was altered (its bytes do not hash to the digest in audit event {ev})"
                    )));
                }
            }
            None => self.purged += 1,
        }
        self.chunks += 1;
        Ok(())
    }

    pub fn session_done(&mut self) {
        self.sessions += 1;
    }

    /// Fails if an audited chunk was not found in the store.
    pub fn finish(&self) -> Result<(), VerifyError> {
        if let Some(((session, seq), (_, _, ev))) = self.expected.iter().next() {
            return Err(err(format!(
                "recording of session {session}: chunk {seq} (audit event {ev}) is missing from the store (dropped)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: &mut RecordingVerifier, s: &str, n: u64, p: &[u8]) {
        let d = hex::encode(chunk_digest(s, n, p));
        v.expect(
            n + 1,
            &json!({"session": s, "chunk": n, "sha256": d, "bytes": p.len()}),
        )
        .unwrap();
    }

    #[test]
    fn altered_dropped_swapped_and_extra_chunks_fail() {
        let d = |s: &str, n: u64, p: &[u8]| chunk_digest(s, n, p);
        let mut v = RecordingVerifier::default();
        ev(&mut v, "s", 0, b"a");
        ev(&mut v, "s", 1, b"b");
        v.chunk("s", 0, &d("s", 0, b"a"), Some(b"a")).unwrap();
        v.chunk("s", 1, &d("s", 1, b"b"), None).unwrap();
        v.finish().unwrap();
        assert_eq!((v.chunks, v.purged), (2, 1));

        let mut v = RecordingVerifier::default();
        ev(&mut v, "s", 0, b"a");
        let e = v.chunk("s", 0, &d("s", 0, b"a"), Some(b"A")).unwrap_err();
        assert!(e.message.contains("chunk 0 was altered"), "{e}");

        let mut v = RecordingVerifier::default();
        ev(&mut v, "s", 0, b"a");
        ev(&mut v, "s", 1, b"b");
        v.chunk("s", 0, &d("s", 0, b"a"), Some(b"a")).unwrap();
        let e = v.finish().unwrap_err();
        assert!(
            e.message.contains("chunk 1 (audit event 2) is missing"),
            "{e}"
        );

        // Swapped: chunk 1's bytes stored as chunk 0 (with chunk 1's digest).
        let mut v = RecordingVerifier::default();
        ev(&mut v, "s", 0, b"a");
        ev(&mut v, "s", 1, b"b");
        assert!(v.chunk("s", 0, &d("s", 1, b"b"), Some(b"b")).is_err());

        let mut v = RecordingVerifier::default();
        assert!(v.chunk("s", 0, &d("s", 0, b"a"), Some(b"a")).is_err());
    }
}
