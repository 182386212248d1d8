//! Watching and reading recordings, and keeping them: every view is audited first
//! (`recording.viewed`), and hands back a short-lived view token that the data reads need, so
//! no read of a recording escapes the trail. Silent sessions of ended grants are closed, and
//! retention deletes old payloads (digests stay, so `audit verify` still passes).

use super::{Engine, event};
use crate::error::ApiError;
use base64::Engine as _;
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, RecordingSession};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a view token is good for.
const VIEW_TTL: Duration = Duration::from_secs(12 * 3600);
/// Chunks per data read (each at most 1 MiB).
pub const MAX_CHUNKS_PER_READ: u32 = 4;
/// An open session of an ended grant whose recorder stayed silent this long is closed.
const SILENT_GRACE: Duration = Duration::from_secs(60);

/// A session as the API shows it.
pub fn session_json(s: &RecordingSession) -> Value {
    json!({"session": s.id, "grant": s.grant_id, "host": s.host, "client": s.client,
           "recorder": s.recorder_addr, "kind": s.kind, "command": s.command,
           "cols": s.cols, "rows": s.rows, "mode": s.mode,
           "started_at": rfc3339(s.started_at), "started_unix": s.started_at.unix_secs(),
           "ended_at": s.ended_at.map(rfc3339), "end_reason": s.end_reason,
           "exit_status": s.exit_status, "bytes": s.bytes, "chunks": s.chunks,
           "capped": s.capped, "purged": s.purged})
}

impl Engine {
    fn view_mac(&self, user: &str, grant: &str, until: i64) -> String {
        use hmac::{Hmac, Mac};
        let key = self.keys.kek.derive("recording view");
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(&key[..]) else {
            return String::new();
        };
        m.update(format!("{user}\n{grant}\n{until}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..24])
    }

    /// Opens a view of a grant's recordings (`purpose`: watch, export, text): audited.
    pub async fn open_recording_view(
        &self,
        who: &super::Principal,
        grant_id: &str,
        purpose: &str,
    ) -> Result<Value, ApiError> {
        if !["watch", "export", "text", "list"].contains(&purpose) {
            return Err(ApiError::bad("purpose must be watch, export, text or list"));
        }
        let g = self.load(grant_id).await?;
        if !self.may_see(who, &g) {
            return Err(ApiError::NotFound(format!("no grant {grant_id}")));
        }
        let sessions = self.store.recording_sessions(grant_id).await?;
        let now = self.now();
        let until = now.plus(VIEW_TTL).unix_secs();
        self.audit_only(vec![event(
            now,
            "recording.viewed",
            Some(&who.name),
            Some(g.info()),
            json!({"purpose": purpose, "sessions": sessions.iter().map(|s| &s.id).collect::<Vec<_>>()}),
        )])
        .await?;
        Ok(json!({
            "grant": grant_id,
            "state": g.state_name(),
            "view": format!("{until}.{}", self.view_mac(&who.name, grant_id, until)),
            "sessions": sessions.iter().map(session_json).collect::<Vec<_>>(),
        }))
    }

    /// Checks a view token for `who` and `grant_id`.
    fn check_view(
        &self,
        who: &super::Principal,
        grant_id: &str,
        view: &str,
    ) -> Result<(), ApiError> {
        let bad = || {
            ApiError::Forbidden(
                "no valid view of this recording: open one first (`breakglass watch` or `breakglass recording` do), it is audited".into(),
            )
        };
        let (until, mac) = view.split_once('.').ok_or_else(bad)?;
        let until: i64 = until.parse().map_err(|_| bad())?;
        if until < self.now().unix_secs() {
            return Err(bad());
        }
        let want = self.view_mac(&who.name, grant_id, until);
        if want.is_empty() || !bool::from(want.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(bad());
        }
        Ok(())
    }

    /// The sessions of a grant under a view (for following new sessions while watching).
    pub async fn recording_sessions_view(
        &self,
        who: &super::Principal,
        grant_id: &str,
        view: &str,
    ) -> Result<Value, ApiError> {
        self.check_view(who, grant_id, view)?;
        let g = self.load(grant_id).await?;
        let sessions = self.store.recording_sessions(grant_id).await?;
        Ok(json!({"grant": grant_id, "state": g.state_name(),
                  "sessions": sessions.iter().map(session_json).collect::<Vec<_>>()}))
    }

    /// Chunks of a session from `from` under a view.
    pub async fn recording_data(
        &self,
        who: &super::Principal,
        session_id: &str,
        from: u64,
        view: &str,
    ) -> Result<Value, ApiError> {
        let nf = || ApiError::NotFound(format!("no recorded session {session_id:.40}"));
        if session_id.len() > 40 {
            return Err(nf());
        }
        let s = self
            .store
            .recording_session(session_id)
            .await?
            .ok_or_else(nf)?;
        self.check_view(who, &s.grant_id, view)?;
        let chunks = self
            .store
            .recording_chunks(session_id, from, MAX_CHUNKS_PER_READ)
            .await?;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let next = chunks.last().map_or(from, |c| c.seq + 1);
        Ok(json!({
            "session": session_json(&s),
            "chunks": chunks.iter().map(|c| json!({"chunk": c.seq, "at": rfc3339(c.at), "bytes": c.size,
                "sha256": hex::encode(&c.digest), "data": c.payload.as_ref().map(|p| b64.encode(p))})).collect::<Vec<_>>(),
            "next": next,
            "more": next < s.chunks,
        }))
    }

    /// Closes sessions whose grant ended a while ago and whose recorder never reported the end,
    /// and applies retention. Returns how many sessions it closed and purged.
    pub async fn tidy_recordings(&self) -> Result<(usize, usize), ApiError> {
        let now = self.now();
        let mut closed = 0;
        for s in self.store.open_recording_sessions().await? {
            let Some(g) = self.store.grant(&s.grant_id).await? else {
                continue;
            };
            let ended_long_ago = match &g {
                breakglass_core::grant::AnyGrant::Ended(e) => {
                    e.state.ended_at.plus(SILENT_GRACE) <= now
                }
                _ => false,
            };
            if ended_long_ago {
                let why = "closed by the server: the grant ended and the recorder did not report the session's end";
                self.end_session(&s, g.info(), why, None).await?;
                closed += 1;
            }
        }
        let purged = self.purge_recordings(now).await?;
        Ok((closed, purged))
    }

    async fn purge_recordings(&self, now: Timestamp) -> Result<usize, ApiError> {
        let policy = self.policy();
        let Some(shortest) = policy
            .set
            .resources
            .iter()
            .filter_map(|r| self.recording_settings(&r.name).retention)
            .min()
        else {
            return Ok(0);
        };
        let before = Timestamp(
            now.0
                .saturating_sub(i64::try_from(shortest.as_millis()).unwrap_or(i64::MAX)),
        );
        let mut n = 0;
        for s in self.store.purgeable_sessions(before, 100).await? {
            let Some(g) = self.store.grant(&s.grant_id).await? else {
                continue;
            };
            let Some(keep) = self.recording_settings(&g.info().resource).retention else {
                continue;
            };
            if s.ended_at.is_none_or(|e| e.plus(keep) > now) {
                continue;
            }
            let ev = event(
                now,
                "recording.purged",
                Some("system"),
                Some(g.info()),
                json!({"session": s.id, "chunks": s.chunks, "bytes": s.bytes,
                       "retention_secs": keep.as_secs(), "note": "payloads deleted; digests kept"}),
            );
            self.commit(
                vec![Change::PurgeRecording {
                    session_id: s.id.clone(),
                }],
                vec![ev],
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }
}
