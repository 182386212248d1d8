//! Sealed secrets (resource kind `secret`): a static emergency credential (cloud root account,
//! HSM PIN, legacy admin password) stored encrypted under the KEK, released only to the holder
//! of an active grant on that resource (each release audited before the value leaves), and
//! flagged "must rotate" when the grant ends until an admin stores a new value.

use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::grant::AnyGrant;
use breakglass_core::policy::ResourceKind;
use breakglass_core::time::rfc3339;
use breakglass_store::Change;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Largest secret accepted.
pub const MAX_SECRET: usize = 64 * 1024;

fn aad(resource: &str) -> String {
    format!("secret:{resource}")
}

impl Engine {
    /// The unsealed connector secret stored for a resource (a postgres resource's admin URL
    /// with `admin_url_sealed: true`), if any.
    pub(crate) async fn unseal_connector_secret(
        &self,
        resource: &str,
    ) -> Result<Option<Zeroizing<String>>, ApiError> {
        let Some(rec) = self.store.secret(resource).await? else {
            return Ok(None);
        };
        let plain = self
            .keys
            .kek
            .open(&aad(resource), &rec.sealed)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        String::from_utf8(plain.to_vec())
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|_| ApiError::Internal("sealed admin URL is not UTF-8".into()))
    }

    fn secret_resource(&self, resource: &str) -> Result<(), ApiError> {
        match self.policy().set.resource(resource) {
            Some(r) if r.kind == ResourceKind::Secret => Ok(()),
            Some(r) => Err(ApiError::bad(format!(
                "resource {resource} is of kind {}, not secret: its credential is issued by its connector, never released as a stored secret",
                r.kind.as_str()
            ))),
            None => Err(ApiError::NotFound(format!(
                "no resource {resource:.64}: declare it with `kind: secret` in the policy"
            ))),
        }
    }

    /// Stores (or rotates) a secret. Admins only.
    pub async fn secret_put(
        &self,
        who: &Principal,
        resource: &str,
        value: &str,
    ) -> Result<Value, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "storing secrets is for admins (policy `admins`)".into(),
            ));
        }
        // A postgres resource with `admin_url_sealed: true` keeps its admin URL here too (never
        // released by `secret show`, never flagged for rotation by a grant).
        let admin_url_for = self.policy().set.resource(resource).is_some_and(|r| {
            r.kind == ResourceKind::Postgres
                && breakglass_connectors::postgres::admin_url_is_sealed(&r.settings)
        });
        if admin_url_for {
            breakglass_connectors::postgres::check_admin_url(resource, value).map_err(|e| {
                ApiError::bad_hint(
                    e.to_string(),
                    "pipe the admin role's URL on standard input: breakglass secret put RESOURCE < url-file",
                )
            })?;
        } else {
            self.secret_resource(resource)?;
        }
        if value.is_empty() || value.len() > MAX_SECRET {
            return Err(ApiError::bad_hint(
                "the secret must be 1 byte to 64 KiB",
                "pipe it on standard input: breakglass secret put RESOURCE < file",
            ));
        }
        let existing = self.store.secret(resource).await?;
        let version = existing.as_ref().map(|s| s.version + 1).unwrap_or(1);
        let kind = if existing.is_some() {
            "secret.rotated"
        } else {
            "secret.stored"
        };
        let now = self.now();
        let sealed = self.keys.kek.seal(&aad(resource), value.as_bytes());
        self.commit(
            vec![Change::PutSecret {
                resource: resource.to_string(),
                sealed,
                version,
                by: who.name.clone(),
                at: now,
            }],
            vec![breakglass_core::audit::NewEvent {
                resource: Some(resource.to_string()),
                ..event(
                    now,
                    kind,
                    Some(&who.name),
                    None,
                    json!({"version": version}),
                )
            }],
        )
        .await?;
        Ok(json!({"resource": resource, "version": version, "must_rotate": false}))
    }

    /// Releases the secret to the holder of an active grant on it (audited first).
    pub async fn secret_show(
        &self,
        who: &Principal,
        grant_id: &str,
    ) -> Result<(Zeroizing<String>, i64), ApiError> {
        let g = self.load_own(who, grant_id).await?;
        let AnyGrant::Active(a) = &g else {
            return Err(ApiError::Forbidden(format!(
                "grant {grant_id} is {}: secrets are released only under an active grant",
                g.state_name()
            )));
        };
        self.secret_resource(&a.info.resource)?;
        let Some(rec) = self.store.secret(&a.info.resource).await? else {
            return Err(ApiError::NotFound(format!(
                "no secret is stored for {}: an admin must run `breakglass secret put {}`",
                a.info.resource, a.info.resource
            )));
        };
        let plain = self
            .keys
            .kek
            .open(&aad(&a.info.resource), &rec.sealed)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let text = Zeroizing::new(
            String::from_utf8(plain.to_vec())
                .map_err(|_| ApiError::Internal("secret is not UTF-8".into()))?,
        );
        // Fail closed: the release is durable in the audit trail before the value leaves.
        self.commit(
            vec![],
            vec![event(
                self.now(),
                "secret.released",
                Some(&who.name),
                Some(&a.info),
                json!({"version": rec.version}),
            )],
        )
        .await?;
        Ok((text, rec.version))
    }

    /// Secret metadata (never values). Admins only.
    pub async fn secrets_list(&self, who: &Principal) -> Result<Vec<Value>, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "the secret list is for admins (policy `admins`)".into(),
            ));
        }
        Ok(self
            .store
            .secrets()
            .await?
            .iter()
            .map(|s| {
                json!({"resource": s.resource, "version": s.version, "must_rotate": s.must_rotate,
                       "updated_at": rfc3339(s.updated_at), "updated_by": s.updated_by})
            })
            .collect())
    }

    /// When a change ends an active grant on a secret resource: flag the secret for rotation.
    pub(crate) fn secret_rotation_for(
        &self,
        change: &Change,
    ) -> Option<(Change, breakglass_core::audit::NewEvent)> {
        let e = change.ends_access()?;
        // A drill releases the secret to the server itself (never shown, zeroised): no rotation.
        if e.info.drill {
            return None;
        }
        let kind = self.policy().set.resource(&e.info.resource).map(|r| r.kind);
        (kind == Some(ResourceKind::Secret)).then(|| {
            (
                Change::FlagSecretRotation {
                    resource: e.info.resource.clone(),
                },
                event(
                    e.state.ended_at,
                    "secret.must_rotate",
                    Some("system"),
                    Some(&e.info),
                    json!({"hint": format!("run `breakglass secret rotate {}` after changing it at the source", e.info.resource)}),
                ),
            )
        })
    }
}
