//! The recorder's side of session recording: `breakglass session` on an SSH host opens a
//! session, streams chunks, and reports the end. Every chunk is committed with a
//! `recording.chunk` audit event holding its digest before it is acknowledged, so an
//! acknowledged chunk is durable and covered by the chain (fail closed: no acknowledgement, and
//! a required recorder pauses, then ends the session).
//!
//! Authentication: the certificate's force-command carries a token = HMAC(KEK-derived key,
//! grant id), passed to the recorder in its environment. The server checks it, that the grant is
//! active, and that the serial given is the grant's certificate serial, then hands back a random
//! per-session secret (only its SHA-256 is stored). Chunks need that secret: the token alone
//! (which the grant's holder can read in their certificate) can open new sessions of their own
//! grant, never append to a session the recorder opened.

use super::{Engine, check_text, event};
use crate::error::ApiError;
use base64::Engine as _;
use breakglass_core::grant::{AnyGrant, GrantInfo, Outcome};
use breakglass_core::recording::{self, CapAction, Mode, RecordingSettings};
use breakglass_core::time::Timestamp;
use breakglass_store::{Change, Chunk, RecordingSession};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Sessions a grant may have open at once.
pub const MAX_OPEN_SESSIONS: usize = 32;
/// How far ahead of the next chunk a recorder may post, and how long such a chunk waits.
const WINDOW_MAX: u64 = 16;
const ORDER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// How often an idle recorder asks whether to go on (the bound on revocation → session end).
pub const HEARTBEAT_MS: u64 = 250;

/// What a recorder says when it opens a session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderHello {
    pub grant: String,
    pub serial: u64,
    pub token: String,
    pub host: String,
    #[serde(default)]
    pub client: String,
    /// `pty` or `exec`.
    pub kind: String,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub cols: u16,
    #[serde(default)]
    pub rows: u16,
}

/// The session the server opened for a recorder.
#[derive(Debug, Serialize)]
pub struct RecorderStart {
    pub session: String,
    pub secret: String,
    pub mode: &'static str,
    pub max_bytes: u64,
    pub on_cap: &'static str,
    pub ack_timeout_ms: u64,
    pub heartbeat_ms: u64,
}

/// The answer to a chunk or heartbeat.
#[derive(Debug, Serialize)]
pub struct Ack {
    /// The next chunk number the server expects (all below are durable).
    pub next: u64,
    /// Set when the session must end now, with the reason to show the user.
    pub end: Option<String>,
    /// The size cap was reached: send no more output (markers only).
    pub capped: bool,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a session of this grant must end now, if it must.
pub(crate) fn end_reason(g: &AnyGrant, now: Timestamp) -> Option<String> {
    let id = &g.info().id;
    match g {
        AnyGrant::Active(a) if now < a.state.expires_at => None,
        AnyGrant::Active(_) => Some(format!("grant {id} expired")),
        AnyGrant::Ended(e) => Some(match &e.state.outcome {
            Outcome::Revoked { by, .. } => format!("grant {id} was revoked by {by}"),
            Outcome::Expired => format!("grant {id} expired"),
            o => format!("grant {id} has ended ({})", o.state_name()),
        }),
        AnyGrant::Pending(_) => Some(format!("grant {id} is not active")),
    }
}

impl Engine {
    /// The token a grant's certificate hands its recorder.
    pub fn recorder_token(&self, grant_id: &str) -> String {
        use hmac::{Hmac, Mac};
        let key = self.keys.kek.derive("recorder token");
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(&key[..]) else {
            return String::new();
        };
        m.update(grant_id.as_bytes());
        b64(&m.finalize().into_bytes()[..24])
    }

    /// The recording settings of a resource (defaults if it left the policy).
    pub(crate) fn recording_settings(&self, resource: &str) -> RecordingSettings {
        self.policy()
            .set
            .resource(resource)
            .and_then(|r| RecordingSettings::from_settings(&r.settings).ok())
            .unwrap_or_default()
    }

    /// Opens a recorded session, or refuses (audited when the token was right).
    pub async fn recorder_start(
        &self,
        hello: RecorderHello,
        peer: IpAddr,
    ) -> Result<RecorderStart, ApiError> {
        check_hello(&hello)?;
        let want = self.recorder_token(&hello.grant);
        if want.is_empty() || !bool::from(want.as_bytes().ct_eq(hello.token.as_bytes())) {
            // Not audited: anyone can send this, and the audit trail is not theirs to fill.
            tracing::warn!(grant = %hello.grant.chars().take(64).collect::<String>(), %peer, "recorder with a wrong token refused");
            return Err(ApiError::Forbidden(
                "the recorder's token does not belong to this grant: log in with the grant's own certificate".into(),
            ));
        }
        let g = self.load(&hello.grant).await?;
        let now = self.now();
        let settings = self.recording_settings(&g.info().resource);
        if let Some(why) = self.why_no_session(&g, &hello, &settings, now).await? {
            self.audit_only(vec![event(
                now,
                "session.refused",
                Some(&g.info().user),
                Some(g.info()),
                json!({"host": hello.host, "client": hello.client, "kind": hello.kind,
                       "recorder": peer.to_string(), "reason": why}),
            )])
            .await?;
            return Err(ApiError::Forbidden(format!("no session: {why}")));
        }
        self.open_session(g.info(), hello, settings, peer, now)
            .await
    }

    /// Why a recorder may not open a session of `g` now, if it may not.
    async fn why_no_session(
        &self,
        g: &AnyGrant,
        hello: &RecorderHello,
        settings: &RecordingSettings,
        now: Timestamp,
    ) -> Result<Option<String>, ApiError> {
        if let Some(why) = end_reason(g, now) {
            return Ok(Some(why));
        }
        let id = &g.info().id;
        let serial = self
            .store
            .credential(id)
            .await?
            .and_then(|c| c.handle.get("serial").and_then(|s| s.as_u64()));
        if serial != Some(hello.serial) {
            return Ok(Some(format!(
                "certificate serial {} is not grant {id}'s certificate",
                hello.serial
            )));
        }
        if settings.mode == Mode::Off {
            return Ok(Some(format!(
                "{} does not record sessions",
                g.info().resource
            )));
        }
        let sessions = self.store.recording_sessions(id).await?;
        let open = sessions.iter().filter(|s| s.ended_at.is_none()).count();
        if open >= MAX_OPEN_SESSIONS {
            return Ok(Some(format!(
                "grant {id} already has {open} open sessions (at most {MAX_OPEN_SESSIONS})"
            )));
        }
        Ok(None)
    }

    async fn open_session(
        &self,
        info: &GrantInfo,
        hello: RecorderHello,
        settings: RecordingSettings,
        peer: IpAddr,
        now: Timestamp,
    ) -> Result<RecorderStart, ApiError> {
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let session = format!("s-{}", hex::encode(&raw[..8]));
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut secret[..]);
        let secret = zeroize::Zeroizing::new(b64(&secret[..]));
        let row = RecordingSession {
            id: session.clone(),
            grant_id: info.id.clone(),
            host: hello.host.clone(),
            client: hello.client.clone(),
            recorder_addr: peer.to_string(),
            kind: hello.kind.clone(),
            command: hello.command.clone(),
            cols: hello.cols,
            rows: hello.rows,
            mode: settings.mode.as_str().into(),
            started_at: now,
            ended_at: None,
            end_reason: None,
            exit_status: None,
            bytes: 0,
            chunks: 0,
            capped: false,
            purged: false,
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
        };
        let ev = event(
            now,
            "session.started",
            Some(&info.user),
            Some(info),
            json!({"session": session, "host": hello.host, "client": hello.client, "kind": hello.kind,
                   "command": hello.command, "cols": hello.cols, "rows": hello.rows,
                   "mode": settings.mode.as_str(), "recorder": peer.to_string()}),
        );
        self.commit(vec![Change::StartRecording(row)], vec![ev])
            .await?;
        self.metrics.recorded_sessions.inc();
        Ok(RecorderStart {
            session,
            secret: secret.to_string(),
            mode: settings.mode.as_str(),
            max_bytes: settings.max_bytes,
            on_cap: settings.on_cap.as_str(),
            ack_timeout_ms: u64::try_from(settings.ack_timeout.as_millis()).unwrap_or(5000),
            heartbeat_ms: HEARTBEAT_MS,
        })
    }

    /// The session `id`, if `secret` is its recorder's.
    async fn recorder_session(&self, id: &str, secret: &str) -> Result<RecordingSession, ApiError> {
        let denied =
            || ApiError::Forbidden(format!("no recorded session {id:.40} with that secret"));
        if id.len() > 40 {
            return Err(denied());
        }
        let s = self.store.recording_session(id).await?.ok_or_else(denied)?;
        let given = Sha256::digest(secret.as_bytes());
        if !bool::from(given.as_slice().ct_eq(&s.secret_hash)) {
            return Err(denied());
        }
        Ok(s)
    }

    /// Takes chunk `seq` (or, without one, a heartbeat) and says whether to go on.
    pub async fn recorder_chunk(
        &self,
        id: &str,
        secret: &str,
        seq: Option<u64>,
        gap_ms: Option<u64>,
        body: bytes::Bytes,
    ) -> Result<Ack, ApiError> {
        let s = self.recorder_session(id, secret).await?;
        let g = self.load(&s.grant_id).await?;
        let now = self.now();
        let end = s.end_reason.clone().or_else(|| end_reason(&g, now));
        let ack = |s: &RecordingSession, end: Option<String>| Ack {
            next: s.chunks,
            end,
            capped: s.capped,
        };
        let Some(seq) = seq else {
            if !body.is_empty() {
                return Err(ApiError::bad("a chunk needs its number (X-Chunk header)"));
            }
            return Ok(ack(&s, end));
        };
        if seq < s.chunks {
            return Ok(ack(&s, end)); // a retransmission of a durable chunk
        }
        if s.ended_at.is_some() {
            return Err(ApiError::Conflict(format!("session {id} has ended")));
        }
        if seq > s.chunks + WINDOW_MAX {
            return Err(ApiError::Conflict(format!(
                "session {id} expects chunk {} next, not {seq}",
                s.chunks
            )));
        }
        if body.is_empty() {
            return Err(ApiError::bad(
                "an empty chunk: send records, or no X-Chunk for a heartbeat",
            ));
        }
        let (terminal, first_ms) = recording::check_chunk(&body).map_err(|e| {
            ApiError::bad(format!("chunk {seq} is not a valid recording chunk: {e}"))
        })?;
        // What the chunk records (a compressed chunk's expanded size): the cap counts this.
        let recorded = recording::expanded_len(&body) as u64;
        let settings = self.recording_settings(&g.info().resource);
        let mut changes = Vec::new();
        let mut events = Vec::new();
        // Past the cap (on_recording_cap: continue) output is not kept: the chunk's place holds
        // a note saying how much was left out, so the numbering stays gapless.
        let elided = || {
            let mut m = Vec::new();
            let note = format!(
                "{recorded} bytes of the session not recorded: it passed its recording cap"
            );
            recording::encode_record(&mut m, recording::Kind::Marker, first_ms, note.as_bytes());
            m
        };
        let payload = if s.capped {
            if terminal || recorded > 16 * 1024 {
                elided()
            } else {
                Vec::from(body)
            }
        } else if s.bytes + recorded > settings.max_bytes {
            events.push(capped_event(&s, g.info(), &settings, now));
            changes.push(Change::CapRecording {
                session_id: s.id.clone(),
            });
            if settings.on_cap == CapAction::End {
                return self
                    .cap_and_end(&s, g.info(), &settings, changes, events, now)
                    .await;
            }
            elided()
        } else {
            // No copy: the request's buffer becomes the stored payload.
            Vec::from(body)
        };
        let digest = recording::chunk_digest(id, seq, &payload);
        let recorded = recording::expanded_len(&payload) as u64;
        events.push(event(
            now,
            recording::CHUNK_EVENT,
            Some(&g.info().user),
            Some(g.info()),
            json!({"session": id, "chunk": seq, "bytes": payload.len(), "recorded": recorded, "sha256": hex::encode(digest)}),
        ));
        if let Some(ms) = gap_ms.filter(|ms| *ms > 0) {
            events.push(event(
                now,
                "recording.gap",
                Some(&g.info().user),
                Some(g.info()),
                json!({"session": id, "unrecorded_ms": ms, "host": s.host}),
            ));
        }
        changes.push(Change::AppendChunk(Chunk {
            session_id: id.to_string(),
            seq,
            at: now,
            size: recorded,
            digest: digest.to_vec(),
            payload: Some(payload),
        }));
        self.commit_in_turn(id, secret, seq, changes, events)
            .await?;
        let s = self.recorder_session(id, secret).await?;
        if s.chunks > seq {
            self.metrics.recorded_chunks.inc();
            self.metrics.recorded_bytes.add(recorded);
        }
        Ok(ack(&s, end))
    }

    /// Commits chunk `seq` once its predecessors are in. The recorder posts a few chunks at
    /// once: one that arrives early is refused by the store's compare-and-swap (nothing
    /// written) and tried again, briefly; chunks arriving together share one durable commit
    /// (the group-commit writer applies them in order in one transaction).
    async fn commit_in_turn(
        &self,
        id: &str,
        secret: &str,
        seq: u64,
        changes: Vec<Change>,
        events: Vec<breakglass_core::audit::NewEvent>,
    ) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + ORDER_WAIT;
        loop {
            match self.commit(changes.clone(), events.clone()).await {
                Ok(()) => return Ok(()),
                Err(ApiError::Conflict(_)) => {
                    let cur = self.recorder_session(id, secret).await?;
                    // Another copy of this chunk won, or the session ended meanwhile.
                    if cur.chunks > seq || cur.ended_at.is_some() {
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ApiError::Conflict(format!(
                            "session {id} expects chunk {} next, not {seq}",
                            cur.chunks
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The session passed its cap and `on_recording_cap: end`: the chunk is not kept and the
    /// session ends.
    async fn cap_and_end(
        &self,
        s: &RecordingSession,
        info: &GrantInfo,
        settings: &RecordingSettings,
        mut changes: Vec<Change>,
        mut events: Vec<breakglass_core::audit::NewEvent>,
        now: Timestamp,
    ) -> Result<Ack, ApiError> {
        let why = format!(
            "the session reached its recording cap of {} bytes",
            settings.max_bytes
        );
        changes.push(Change::EndRecording {
            session_id: s.id.clone(),
            at: now,
            reason: why.clone(),
            exit_status: None,
        });
        events.push(ended_event(s, info, &why, None, now));
        self.commit(changes, events).await?;
        Ok(Ack {
            next: s.chunks,
            end: Some(why),
            capped: true,
        })
    }

    /// The recorder reports the end of its session.
    pub async fn recorder_end(
        &self,
        id: &str,
        secret: &str,
        reason: &str,
        exit_status: Option<i32>,
    ) -> Result<(), ApiError> {
        check_text("reason", reason, 500)?;
        let s = self.recorder_session(id, secret).await?;
        if s.ended_at.is_some() {
            return Ok(());
        }
        let g = self.load(&s.grant_id).await?;
        self.end_session(&s, g.info(), reason, exit_status).await
    }

    /// Ends an open session (recorder's report, or the server closing a silent one).
    pub(crate) async fn end_session(
        &self,
        s: &RecordingSession,
        info: &GrantInfo,
        reason: &str,
        exit_status: Option<i32>,
    ) -> Result<(), ApiError> {
        let now = self.now();
        let change = Change::EndRecording {
            session_id: s.id.clone(),
            at: now,
            reason: reason.to_string(),
            exit_status,
        };
        match self
            .commit(
                vec![change],
                vec![ended_event(s, info, reason, exit_status, now)],
            )
            .await
        {
            Ok(()) | Err(ApiError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn capped_event(
    s: &RecordingSession,
    info: &GrantInfo,
    settings: &RecordingSettings,
    now: Timestamp,
) -> breakglass_core::audit::NewEvent {
    event(
        now,
        "recording.capped",
        Some(&info.user),
        Some(info),
        json!({"session": s.id, "bytes": s.bytes, "max_bytes": settings.max_bytes, "action": settings.on_cap.as_str()}),
    )
}

fn ended_event(
    s: &RecordingSession,
    info: &GrantInfo,
    reason: &str,
    exit_status: Option<i32>,
    now: Timestamp,
) -> breakglass_core::audit::NewEvent {
    event(
        now,
        "session.ended",
        Some(&info.user),
        Some(info),
        json!({"session": s.id, "host": s.host, "reason": reason, "exit_status": exit_status,
               "bytes": s.bytes, "chunks": s.chunks}),
    )
}

fn check_hello(h: &RecorderHello) -> Result<(), ApiError> {
    if h.grant.len() > 64 || h.token.len() > 128 {
        return Err(ApiError::bad("grant id or token too long"));
    }
    check_text("host", &h.host, 255)?;
    check_text("client", &h.client, 255)?;
    if let Some(c) = &h.command {
        check_text("command", c, 4096)?;
    }
    if h.kind != "pty" && h.kind != "exec" {
        return Err(ApiError::bad("kind must be pty or exec"));
    }
    Ok(())
}
