//! USE a drill's credential at the real target, and VERIFY the target refuses it after
//! revocation, per resource kind: ssh (`ssh … id` with the certificate; refused once the host
//! read the KRL), postgres (log in as the grant's role, `SELECT current_user`, granted roles;
//! afterwards login refused and the role gone), secret (released; refused afterwards), exec
//! (the grant hook succeeded; the connector's own check afterwards). An ssh resource that
//! records sessions must also hold the drill session's recording.

use super::super::{Engine, Principal};
use breakglass_connectors::probe::{self, DrillKey};
use breakglass_core::policy::{Resource, ResourceKind};
use serde_json::Value;

/// What the drill holds between USE and VERIFY.
pub(super) struct Held {
    pub kind: ResourceKind,
    pub key: Option<DrillKey>,
    pub credential: Option<Value>,
}

fn field<'a>(c: &'a Option<Value>, k: &str) -> Result<&'a Value, String> {
    c.as_ref()
        .and_then(|c| c.get(k))
        .ok_or_else(|| format!("the credential has no `{k}`"))
}

fn ssh_target(c: &Option<Value>) -> Result<(String, u16, String), String> {
    let host = field(c, "host")?.as_str().unwrap_or_default().to_string();
    let port = field(c, "port")?
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(22);
    let principal = field(c, "principals")?
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or("the certificate names no principal")?
        .to_string();
    if host.is_empty() {
        return Err("the ssh resource has no `host:` to drill against".into());
    }
    Ok((host, port, principal))
}

impl Engine {
    /// Uses the credential at the target; Ok(what the target said).
    pub(super) async fn drill_use(
        &self,
        who: &Principal,
        grant_id: &str,
        held: &Held,
    ) -> Result<String, String> {
        match held.kind {
            ResourceKind::Ssh => {
                let key = held.key.as_ref().ok_or("no drill key")?;
                let cert = field(&held.credential, "certificate")?
                    .as_str()
                    .unwrap_or_default();
                key.set_certificate(cert).map_err(|e| e.to_string())?;
                let (host, port, principal) = ssh_target(&held.credential)?;
                key.ssh_id(&host, port, &principal)
                    .await
                    .map_err(|e| e.to_string())
            }
            ResourceKind::Postgres => {
                let url = field(&held.credential, "url")?.as_str().unwrap_or_default();
                let role = field(&held.credential, "user")?
                    .as_str()
                    .unwrap_or_default();
                let roles: Vec<String> = field(&held.credential, "roles")?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                probe::pg_use(url, role, &roles)
                    .await
                    .map(|u| format!("current_user = {u}, member of {}", roles.join(", ")))
                    .map_err(|e| e.to_string())
            }
            ResourceKind::Secret => match self.secret_show(who, grant_id).await {
                Ok((v, version)) if !v.is_empty() => {
                    Ok(format!("secret version {version} released"))
                }
                Ok(_) => Err("the stored secret is empty".into()),
                Err(e) => Err(e.to_string()),
            },
            ResourceKind::Exec => Ok("the grant hook succeeded".into()),
        }
    }

    /// Whether the target now refuses the credential: Ok(true) refused, Ok(false) still works.
    pub(super) async fn drill_refused(
        &self,
        who: &Principal,
        grant_id: &str,
        resource: &Resource,
        held: &Held,
    ) -> Result<bool, String> {
        match held.kind {
            ResourceKind::Ssh => {
                let key = held.key.as_ref().ok_or("no drill key")?;
                let (host, port, principal) = ssh_target(&held.credential)?;
                key.ssh_refused(&host, port, &principal)
                    .await
                    .map_err(|e| e.to_string())
            }
            ResourceKind::Postgres => {
                let url = field(&held.credential, "url")?.as_str().unwrap_or_default();
                if !probe::pg_refused(url).await {
                    return Ok(false);
                }
                self.connector_says_revoked(grant_id, resource).await
            }
            ResourceKind::Secret => Ok(self.secret_show(who, grant_id).await.is_err()),
            ResourceKind::Exec => self.connector_says_revoked(grant_id, resource).await,
        }
    }

    /// For an ssh resource that records sessions: Ok(Some(note)) when the drill's session left
    /// a recording, Err when it left none; Ok(None) when the resource records nothing.
    pub(super) async fn drill_recording(
        &self,
        grant_id: &str,
        resource: &Resource,
    ) -> Result<Option<String>, String> {
        use breakglass_core::recording::{Mode, RecordingSettings};
        if resource.kind != ResourceKind::Ssh || !resource.settings.contains_key("session_command")
        {
            return Ok(None);
        }
        let settings = RecordingSettings::from_settings(&resource.settings)?;
        if settings.mode == Mode::Off {
            return Ok(None);
        }
        let sessions = self
            .store
            .recording_sessions(grant_id)
            .await
            .map_err(|e| e.to_string())?;
        let recorded: Vec<_> = sessions.iter().filter(|s| s.chunks > 0).collect();
        if recorded.is_empty() {
            return Err(format!(
                "the drill's ssh session left no recording, though {} records sessions \
                 (recording: {}): check that the host reaches the server at its --public-url",
                resource.name,
                settings.mode.as_str()
            ));
        }
        let bytes: u64 = recorded.iter().map(|s| s.bytes).sum();
        Ok(Some(format!(
            "{} session(s) recorded ({bytes} bytes)",
            recorded.len()
        )))
    }

    /// The connector's own check at the target (postgres: the role is gone).
    async fn connector_says_revoked(
        &self,
        grant_id: &str,
        resource: &Resource,
    ) -> Result<bool, String> {
        let Some(rec) = self
            .store
            .credential(grant_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(true);
        };
        let Some(c) = self.connector(resource).await.map_err(|e| e.to_string())? else {
            return Ok(true);
        };
        c.verify_revoked(&rec.handle)
            .await
            .map_err(|e| e.to_string())
    }
}
