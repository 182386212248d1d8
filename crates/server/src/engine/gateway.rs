//! The PostgreSQL gateway's use cases: who may connect (a grant's own credential, checked as
//! SCRAM keys the server derives and never stores), where its role logs in upstream, and the
//! statement recording — a session per connection whose chunks are committed, each with its
//! `recording.chunk` event, before what they describe is forwarded (fail closed).
//!
//! Both passwords are derived from the KEK and the grant id: the responder's (`client`, handed
//! out in the URL) and the role's at the target (`upstream`, set as its SCRAM verifier at
//! activation and used only by the gateway). The responder never learns the second one, so the
//! only way in is through the gateway.

use super::recorder::end_reason;
use super::{Engine, event};
use crate::error::ApiError;
use base64::Engine as _;
use breakglass_core::grant::{AnyGrant, GrantInfo};
use breakglass_core::policy::{self, ResourceKind};
use breakglass_core::recording::{self, Mode, RecordingSettings};
use breakglass_core::time::Timestamp;
use breakglass_store::{Change, Chunk, RecordingSession};
use rand::RngCore;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use zeroize::Zeroizing;

/// A postgres resource's `gateway:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// The host put in the URLs handed out.
    pub host: String,
}

impl GatewaySettings {
    pub fn from_settings(s: &Map<String, Value>) -> Option<GatewaySettings> {
        let g = s.get("gateway")?;
        let listen: SocketAddr = g.get("listen")?.as_str()?.parse().ok()?;
        let host = g
            .get("host")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| listen.ip().to_string());
        Some(GatewaySettings { listen, host })
    }
}

/// Where a grant's role logs in.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// A connection the gateway let in.
#[derive(Debug, Clone)]
pub struct GatewayGrant {
    pub info: GrantInfo,
    pub expires_at: Timestamp,
    pub role: String,
    pub settings: RecordingSettings,
}

pub use breakglass_connectors::postgres::grant_of_role;

impl Engine {
    /// The gateway passwords of a grant: `client` (the responder's) or `upstream` (the role's).
    pub fn gateway_password(&self, grant_id: &str, which: &str) -> Zeroizing<String> {
        use hmac::{Hmac, Mac};
        let key = self.keys.kek.derive(&format!("gateway {which} password"));
        let Ok(mut m) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key[..]) else {
            return Zeroizing::new(String::new());
        };
        m.update(grant_id.as_bytes());
        let out: Zeroizing<[u8; 32]> = Zeroizing::new(m.finalize().into_bytes().into());
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&out[..24]))
    }

    /// The postgres resources that have a gateway, with its settings.
    pub fn gateways(&self) -> Vec<(String, GatewaySettings)> {
        self.policy()
            .set
            .resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Postgres)
            .filter_map(|r| Some((r.name.clone(), GatewaySettings::from_settings(&r.settings)?)))
            .collect()
    }

    /// Where the roles of `resource` log in.
    pub async fn gateway_upstream(&self, resource: &str) -> Result<Upstream, ApiError> {
        let policy = self.policy();
        let r = policy
            .set
            .resource(resource)
            .filter(|r| r.kind == ResourceKind::Postgres)
            .ok_or_else(|| ApiError::NotFound(format!("no postgres resource {resource}")))?;
        let sealed = if breakglass_connectors::postgres::admin_url_is_sealed(&r.settings) {
            self.unseal_connector_secret(&r.name).await?
        } else {
            None
        };
        let pg =
            breakglass_connectors::postgres::Postgres::from_settings(&r.name, &r.settings, sealed)
                .map_err(|e| ApiError::Target(e.to_string()))?;
        let (host, port, database) = pg.upstream().map_err(|e| ApiError::Target(e.to_string()))?;
        Ok(Upstream {
            host,
            port,
            database,
        })
    }

    /// The grant a client logging in as `user` at the gateway of `resource` holds, if it is
    /// active now; else why not (said to the client only after its password was right).
    pub async fn gateway_grant(&self, user: &str, resource: &str) -> Result<GatewayGrant, String> {
        let Some(id) = grant_of_role(user) else {
            return Err(format!("{user:.64} is not a breakglass grant's role"));
        };
        let g = match self.load(&id).await {
            Ok(g) => g,
            Err(_) => return Err(format!("no grant {id}")),
        };
        if g.info().resource != resource {
            return Err(format!(
                "grant {id} is for {}, not {resource}",
                g.info().resource
            ));
        }
        if let Some(why) = end_reason(&g, self.now()) {
            return Err(why);
        }
        let AnyGrant::Active(a) = &g else {
            return Err(format!("grant {id} is not active"));
        };
        // Only the role recorded as the grant's credential: a role of a lost or unrecorded
        // issue (being dropped, or left for the sweep) is no way in.
        let recorded = match self.store.credential(&id).await {
            Ok(Some(c)) if c.revoked_at.is_none() => c.handle["role"].as_str().map(String::from),
            _ => None,
        };
        if recorded.as_deref() != Some(user) {
            return Err(format!("{user:.64} is not the current role of grant {id}"));
        }
        Ok(GatewayGrant {
            info: a.info.clone(),
            expires_at: a.state.expires_at,
            role: user.to_string(),
            settings: self.recording_settings(resource),
        })
    }

    /// Whether a connection of `grant` may go on: its end reason, or its current expiry.
    pub async fn gateway_still(&self, grant: &str) -> Result<Timestamp, String> {
        let g = self.load(grant).await.map_err(|e| e.to_string())?;
        if let Some(why) = end_reason(&g, self.now()) {
            return Err(why);
        }
        match &g {
            AnyGrant::Active(a) => Ok(a.state.expires_at),
            _ => Err(format!("grant {grant} is not active")),
        }
    }

    /// Opens the recorded session of one gateway connection (audited `session.started`).
    pub async fn gateway_open(
        &self,
        g: &GatewayGrant,
        database: &str,
        peer: SocketAddr,
    ) -> Result<Option<String>, ApiError> {
        if g.settings.mode == Mode::Off {
            return Ok(None);
        }
        let mut raw = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let session = format!("s-{}", hex::encode(raw));
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let now = self.now();
        let row = RecordingSession {
            id: session.clone(),
            grant_id: g.info.id.clone(),
            host: format!("{} (gateway)", g.info.resource),
            client: peer.to_string(),
            recorder_addr: "gateway".into(),
            kind: "sql".into(),
            command: Some(format!("database {database} as {}", g.role)),
            cols: 0,
            rows: 0,
            mode: g.settings.mode.as_str().into(),
            started_at: now,
            ended_at: None,
            end_reason: None,
            exit_status: None,
            bytes: 0,
            chunks: 0,
            capped: false,
            purged: false,
            // Nobody appends over HTTP: the gateway commits its chunks itself.
            secret_hash: secret.to_vec(),
        };
        let ev = event(
            now,
            "session.started",
            Some(&g.info.user),
            Some(&g.info),
            json!({"session": session, "host": row.host, "client": row.client, "kind": "sql",
                   "command": row.command, "mode": g.settings.mode.as_str(), "recorder": "gateway"}),
        );
        self.commit(vec![Change::StartRecording(row)], vec![ev])
            .await?;
        self.metrics.recorded_sessions.inc();
        Ok(Some(session))
    }

    /// Commits chunk `seq` of a gateway session with its digest event; returns once durable.
    pub async fn gateway_chunk(
        &self,
        info: &GrantInfo,
        session: &str,
        seq: u64,
        payload: Vec<u8>,
    ) -> Result<(), ApiError> {
        recording::check_chunk(&payload)
            .map_err(|e| ApiError::Internal(format!("gateway chunk {seq}: {e}")))?;
        let now = self.now();
        let digest = recording::chunk_digest(session, seq, &payload);
        let size = payload.len() as u64;
        let ev = event(
            now,
            recording::CHUNK_EVENT,
            Some(&info.user),
            Some(info),
            json!({"session": session, "chunk": seq, "bytes": size, "sha256": hex::encode(digest)}),
        );
        self.commit(
            vec![Change::AppendChunk(Chunk {
                session_id: session.to_string(),
                seq,
                at: now,
                size,
                digest: digest.to_vec(),
                payload: Some(payload),
            })],
            vec![ev],
        )
        .await?;
        self.metrics.recorded_chunks.inc();
        self.metrics.recorded_bytes.add(size);
        Ok(())
    }

    /// Ends a gateway session (audited `session.ended`).
    pub async fn gateway_end(&self, info: &GrantInfo, session: &str, reason: &str) {
        match self.store.recording_session(session).await {
            Ok(Some(s)) if s.ended_at.is_none() => {
                if let Err(e) = self.end_session(&s, info, reason, None).await {
                    tracing::warn!(%session, "cannot end the gateway session: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%session, "cannot end the gateway session: {e}"),
        }
    }

    /// The gateway settings of a resource in the policy (for issuing URLs).
    pub(crate) fn gateway_of(resource: &policy::Resource) -> Option<GatewaySettings> {
        (resource.kind == ResourceKind::Postgres)
            .then(|| GatewaySettings::from_settings(&resource.settings))
            .flatten()
    }
}
