//! Credentials at the targets: issuing them with an activation, one-time pickup, the SSH KRL.

use super::factors::SpendMfaOnError;
use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::grant::{Active, AnyGrant, Grant, GrantInfo};
use breakglass_core::policy;
use breakglass_core::time::{self, Timestamp};
use breakglass_store::Change;
use serde_json::json;

/// What a sealed credential awaiting pickup is bound to.
pub(crate) fn pickup_aad(grant_id: &str) -> String {
    format!("credential-pickup:{grant_id}")
}

/// A credential just issued at its target: the connector, its revoke handle, and the credential
/// to hand out (None when it is sealed for pickup).
pub(crate) type Issued = (
    Box<dyn breakglass_connectors::Connector>,
    serde_json::Value,
    Option<serde_json::Value>,
);

impl Engine {
    /// The connector for a resource (with the keys the server lends connectors).
    pub async fn connector(
        &self,
        resource: &policy::Resource,
    ) -> Result<
        Option<Box<dyn breakglass_connectors::Connector>>,
        breakglass_connectors::ConnectorError,
    > {
        let sealed_admin_url = if resource.kind == policy::ResourceKind::Postgres
            && breakglass_connectors::postgres::admin_url_is_sealed(&resource.settings)
        {
            self.unseal_connector_secret(&resource.name)
                .await
                .map_err(|e| breakglass_connectors::ConnectorError::Config {
                    resource: resource.name.clone(),
                    message: format!("cannot read its sealed admin URL: {e}"),
                })?
        } else {
            None
        };
        let ctx = breakglass_connectors::Context {
            ssh_ca: Some(self.keys.ssh_ca.clone()),
            sealed_admin_url,
            fingerprint_key: Some(self.keys.kek.derive("credential fingerprint")),
        };
        breakglass_connectors::for_resource(resource, &ctx)
    }

    /// Issues the credential of a grant becoming active and adds its record and event to the
    /// unit of work; a target failure still spends the MFA code the unit carries. Returns
    /// (connector, handle, credential) for the caller.
    pub(crate) async fn add_credential(
        &self,
        a: &Grant<Active>,
        for_pickup: bool,
        changes: &mut Vec<Change>,
        events: &mut Vec<NewEvent>,
    ) -> Result<Option<Issued>, ApiError> {
        let Some((change, ev, out)) = self
            .issue_credential(&a.info, a.state.expires_at, for_pickup)
            .await
            .or_else_spend_mfa(self, changes, events)
            .await?
        else {
            return Ok(None);
        };
        changes.push(change);
        events.push(ev);
        Ok(Some(out))
    }

    /// Issues the target credential for a grant that is becoming active. Returns the change and
    /// event to commit with the activation, plus (connector, handle, credential) for the caller.
    /// A target failure is audited and nothing is granted.
    pub(crate) async fn issue_credential(
        &self,
        info: &GrantInfo,
        expires_at: Timestamp,
        for_pickup: bool,
    ) -> Result<Option<(Change, NewEvent, Issued)>, ApiError> {
        let policy = self.policy();
        let Some(resource) = policy.set.resource(&info.resource) else {
            return Ok(None);
        };
        let connector = match self.connector(resource).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ApiError::Target(e.to_string())),
        };
        let now = self.now();
        let token = self.recorder_token(&info.id);
        let gateway = Engine::gateway_of(resource);
        let (client_pw, upstream_pw) = (
            self.gateway_password(&info.id, "client"),
            self.gateway_password(&info.id, "upstream"),
        );
        let req = breakglass_connectors::IssueRequest {
            gateway: gateway
                .as_ref()
                .map(|g| breakglass_connectors::GatewayTicket {
                    host: &g.host,
                    port: g.listen.port(),
                    upstream_password: &upstream_pw,
                    client_password: &client_pw,
                }),
            grant: info,
            now,
            expires_at,
            recorder: self
                .config
                .recorder_url
                .as_deref()
                .map(|url| breakglass_connectors::RecorderTicket { url, token: &token }),
            ssh_public_key: info.ssh_public_key.as_deref(),
        };
        match connector.issue(&req).await {
            Ok(issued) => {
                let kind = connector.kind();
                let change = Change::RecordCredential(breakglass_store::CredentialRecord {
                    grant_id: info.id.clone(),
                    resource: info.resource.clone(),
                    kind: kind.to_string(),
                    fingerprint: issued.fingerprint.clone(),
                    handle: issued.handle.clone(),
                    issued_at: now,
                    state: "issued".into(),
                    attempts: 0,
                    next_attempt_at: None,
                    last_error: None,
                    revoked_at: None,
                    // Activated by someone else: sealed until the holder picks it up once.
                    pickup: issued.credential.as_ref().filter(|_| for_pickup).map(|c| {
                        let bytes = zeroize::Zeroizing::new(c.to_string().into_bytes());
                        self.keys.kek.seal(&pickup_aad(&info.id), &bytes)
                    }),
                });
                let ev = event(
                    now,
                    "credential.issued",
                    Some("system"),
                    Some(info),
                    json!({"kind": kind, "fingerprint": issued.fingerprint, "valid_until": time::rfc3339(expires_at)}),
                );
                Ok(Some((
                    change,
                    ev,
                    (connector, issued.handle, issued.credential),
                )))
            }
            Err(e) => {
                self.audit_only(vec![event(
                    now,
                    "credential.issue_failed",
                    Some("system"),
                    Some(info),
                    json!({"kind": connector.kind(), "error": e.to_string()}),
                )])
                .await?;
                Err(ApiError::Target(format!(
                    "the target for {} could not issue a credential, so no access was granted: {e}",
                    info.resource
                )))
            }
        }
    }

    /// Hands the holder of an active grant the credential issued when approvers activated it,
    /// once: sealed in the store until now, audited before it leaves, then gone.
    pub async fn pickup_credential(
        &self,
        who: &Principal,
        grant_id: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let g = self.load_own(who, grant_id).await?;
        let AnyGrant::Active(a) = &g else {
            return Err(ApiError::Conflict(format!(
                "grant {grant_id} is {}: credentials are handed out only while it is active",
                g.state_name()
            )));
        };
        let Some(rec) = self.store.credential(grant_id).await? else {
            return Err(ApiError::NotFound(format!(
                "grant {grant_id} has no target credential ({} issues none)",
                a.info.resource
            )));
        };
        let Some(sealed) = rec.pickup else {
            return Err(ApiError::Conflict(format!(
                "no credential is waiting for grant {grant_id}: it was shown with the request's answer, or picked up already"
            )));
        };
        let plain = self
            .keys
            .kek
            .open(&pickup_aad(grant_id), &sealed)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let value: serde_json::Value = serde_json::from_slice(&plain)
            .map_err(|_| ApiError::Internal("sealed credential is not JSON".into()))?;
        // Fail closed: the pickup is durable (and cannot happen twice) before the value leaves.
        self.commit(
            vec![Change::TakeCredentialPickup {
                grant_id: grant_id.to_string(),
            }],
            vec![event(
                self.now(),
                "credential.picked_up",
                Some(&who.name),
                Some(&a.info),
                json!({"kind": rec.kind, "fingerprint": rec.fingerprint}),
            )],
        )
        .await?;
        Ok(value)
    }

    /// The OpenSSH KRL of certificates revoked before their natural expiry (certificates whose
    /// `valid-before` passed more than five minutes ago are left out: sshd refuses them anyway).
    pub async fn ssh_krl(&self) -> Result<Vec<u8>, ApiError> {
        let now = self.now();
        let horizon = now.unix_secs().saturating_sub(300);
        let revoked = self.store.revoked_credentials("ssh").await?;
        let serials: Vec<u64> = revoked
            .iter()
            .filter(|c| {
                c.handle["valid_before"]
                    .as_i64()
                    .is_some_and(|vb| vb > horizon)
            })
            .filter_map(|c| c.handle["serial"].as_u64())
            .collect();
        // Every certificate of a reconciled glass case, used or not.
        let mut serials = serials;
        serials.extend(
            self.store
                .glass_case_revoked_serials(Timestamp(horizon.saturating_mul(1000)))
                .await?,
        );
        let generated = u64::try_from(now.unix_secs()).unwrap_or(0);
        Ok(breakglass_connectors::krl::encode(
            &self.keys.ssh_ca.public_blob(),
            &serials,
            u64::try_from(now.0).unwrap_or(0),
            generated,
            &format!("breakglass {} revoked certificates", self.keys.origin),
        ))
    }
}
