//! Session recordings: the record format a recorder streams, the digest that chains each chunk
//! into the audit trail, a resource's recording settings, and the renderings a reviewer reads
//! (asciicast v2 for `asciinema play`, a plain-text transcript).
//!
//! A recording is a sequence of chunks numbered from 0. A chunk is a run of [`Record`]s encoded
//! by [`frames`]. Each stored chunk's [`chunk_digest`] — which binds the session id and the chunk
//! number, so a chunk cannot be moved, reordered or swapped between sessions — is written in the
//! `recording.chunk` audit event committed with the chunk, so signed checkpoints cover it.

pub mod frames;
pub mod render;
mod settings;
pub mod verify;

pub use frames::{
    COMPRESSED, Kind, Record, RecordError, check_chunk, compress_chunk, decode_chunk,
    encode_record, expand, expanded_len,
};
pub use settings::{CapAction, Mode, RecordingSettings};
pub use verify::{CHUNK_EVENT, RecordingVerifier};

use sha2::{Digest, Sha256};

/// Largest chunk a recorder may send (bytes of encoded records).
pub const MAX_CHUNK: usize = 1024 * 1024;

/// The digest of chunk `seq` of session `session`: SHA-256 over a domain tag, the session id,
/// the chunk number and the payload.
pub fn chunk_digest(session: &str, seq: u64, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"breakglass-recording-chunk-v1\0");
    h.update((session.len() as u64).to_be_bytes());
    h.update(session.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(payload);
    h.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_binds_session_and_number() {
        let d = chunk_digest("s1", 0, b"x");
        assert_ne!(d, chunk_digest("s1", 1, b"x"));
        assert_ne!(d, chunk_digest("s2", 0, b"x"));
        assert_ne!(d, chunk_digest("s1", 0, b"y"));
        assert_eq!(d, chunk_digest("s1", 0, b"x"));
    }
}
