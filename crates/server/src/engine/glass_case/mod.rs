//! The offline glass case (admins, MFA): sealing a ladder of future-dated SSH certificates and
//! the sealed secrets for M of N custodians, and reconciling the signed journal of an opening.
//!
//! The server builds the case's contents and keeps only what it needs to undo it: the serials
//! of every certificate (all of them join the KRL on reconcile, used or not) and the public
//! half of the case's journal key. The CLI splits and encrypts the contents for the custodians
//! (`core::glass_case`), so no custodian passphrase ever reaches the server.

mod postgres;
mod reconcile;

use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::glass_case::{
    self as gc, BUNDLE_FORMAT, ChainHead, Header, LadderCert, Payload, SecretItem,
};
use breakglass_core::policy::ResourceKind;
use breakglass_core::time::rfc3339;
use breakglass_store::{Change, GlassCase, GlassSerial};
use rand::RngCore;
use serde_json::{Value, json};

impl Engine {
    /// Seals a case: returns the header and the payload for the CLI to split and encrypt.
    pub async fn glass_case_seal(
        &self,
        who: &Principal,
        custodians: &[String],
        threshold: u32,
        days: u32,
        otp: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.admin_only(who, "sealing a glass case")?;
        gc::check_plan(custodians, threshold, days).map_err(|e| ApiError::bad(e.to_string()))?;
        self.check_case_not_empty()?;
        // MFA before anything exists at a target; the code is spent only with the seal's commit.
        let (changes, events, _mfa) = self.verify_mfa(who, otp, "sealing a glass case").await?;
        self.seal_with(who, custodians, threshold, days, changes, events)
            .await
    }

    fn check_case_not_empty(&self) -> Result<(), ApiError> {
        let policy = self.policy();
        let r = &policy.set.resources;
        if !r.iter().any(|r| {
            matches!(r.kind, ResourceKind::Ssh | ResourceKind::Secret) || postgres::in_case(r)
        }) {
            return Err(ApiError::bad_hint(
                "the policy has no ssh or secret resources, and no postgres resource with `glass_case: true`: a glass case would be empty",
                "add the resources the case should open to the policy, then seal",
            ));
        }
        Ok(())
    }

    /// Builds and records a case, committed with `changes` and `events` (the MFA of the
    /// request that asked for it).
    async fn seal_with(
        &self,
        who: &Principal,
        custodians: &[String],
        threshold: u32,
        days: u32,
        mut changes: Vec<Change>,
        mut events: Vec<breakglass_core::audit::NewEvent>,
    ) -> Result<Value, ApiError> {
        let policy = self.policy();
        let ssh: Vec<_> = policy
            .set
            .resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Ssh)
            .collect();
        let secret_resources: Vec<_> = policy
            .set
            .resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Secret)
            .collect();
        let now = self.now();
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let case_id = format!("gc-{}", hex::encode(id));
        let (ssh_key, subject) =
            breakglass_connectors::ssh::new_key(&format!("breakglass glass case {case_id}"))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        let ladder = gc::plan_ladder(now, days);
        let expires_at = ladder.last().map_or(now, |(_, b)| *b);
        let mut certificates = Vec::new();
        let mut serials = Vec::new();
        for r in &ssh {
            let c = breakglass_connectors::ssh::SshCert::from_settings(
                &r.name,
                &r.settings,
                self.keys.ssh_ca.clone(),
            )
            .map_err(|e| ApiError::Target(e.to_string()))?;
            let (host, port) = c.host();
            for (after, before) in &ladder {
                let (va, vb) = (after.unix_secs() as u64, before.unix_secs() as u64);
                let (serial, certificate) = c
                    .sign_ladder(&subject, &case_id, va, vb)
                    .map_err(|e| ApiError::Target(e.to_string()))?;
                serials.push(GlassSerial {
                    case_id: case_id.clone(),
                    serial,
                    resource: r.name.clone(),
                    valid_after: *after,
                    valid_before: *before,
                });
                certificates.push(LadderCert {
                    resource: r.name.clone(),
                    serial,
                    valid_after: after.0,
                    valid_before: before.0,
                    certificate,
                    principals: c.principals().to_vec(),
                    host: host.map(String::from),
                    port,
                });
            }
        }
        let mut secrets = Vec::new();
        for r in &secret_resources {
            if let (Some(value), Some(rec)) = (
                self.unseal_connector_secret(&r.name).await?,
                self.store.secret(&r.name).await?,
            ) {
                secrets.push(SecretItem {
                    resource: r.name.clone(),
                    version: rec.version,
                    value: value.to_string(),
                });
            }
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        let journal_public = gc::public_key_of(&seed);
        let head = self.store.audit_head().await?.map(|h| ChainHead {
            seq: h.seq,
            hash: hex::encode(h.chain_hash),
        });
        let (postgres, roles) = self.glass_case_pg_logins(&case_id, &ladder, now).await?;
        let mut resources: Vec<String> = certificates.iter().map(|c| c.resource.clone()).collect();
        resources.extend(secrets.iter().map(|s| s.resource.clone()));
        resources.extend(postgres.iter().map(|p| p.resource.clone()));
        resources.dedup();
        let header = Header {
            format: BUNDLE_FORMAT.into(),
            case_id: case_id.clone(),
            origin: self.keys.origin.clone(),
            sealed_by: who.name.clone(),
            created_at: now.0,
            not_before: now.0,
            expires_at: expires_at.0,
            threshold,
            custodians: custodians.to_vec(),
            chain_head: head.clone(),
            resources: resources.clone(),
            journal_public_key: gc::bundle::b64(&journal_public),
        };
        let payload = Payload {
            ssh_private_key: ssh_key.to_string(),
            certificates,
            secrets,
            postgres,
            journal_key: gc::bundle::b64(seed.as_ref()),
        };
        let secret_versions: Vec<_> = payload
            .secrets
            .iter()
            .map(|s| json!({"resource": s.resource, "version": s.version}))
            .collect();
        events.push(event(
            now,
            "glass_case.sealed",
            Some(&who.name),
            None,
            json!({"case_id": case_id, "custodians": custodians, "threshold": threshold,
                   "days": days, "expires_at": rfc3339(expires_at), "resources": resources,
                   "certificates": serials.len(), "secrets": secret_versions,
                   "postgres_logins": roles.iter().map(|r| &r.role).collect::<Vec<_>>(),
                   "chain_head": head}),
        ));
        changes.push(Change::SealGlassCase {
            case: GlassCase {
                id: case_id.clone(),
                sealed_by: who.name.clone(),
                created_at: now,
                expires_at,
                threshold,
                custodians: custodians.to_vec(),
                chain_head: head.map(|h| (h.seq, h.hash)),
                journal_key: journal_public.to_vec(),
                state: "sealed".into(),
                warned_at: None,
                reconciled_at: None,
            },
            serials,
            roles: roles.clone(),
        });
        if let Err(e) = self.commit(changes, events).await {
            // Not sealed: its logins must not outlive the refusal (the sweep drops any left).
            self.drop_glass_roles(&roles).await;
            return Err(e);
        }
        Ok(json!({"header": header, "payload": payload}))
    }

    /// Sealed cases: what each holds and until when (admins).
    pub async fn glass_cases(&self, who: &Principal) -> Result<Value, ApiError> {
        self.admin_only(who, "the glass case list")?;
        let now = self.now();
        let cases = self.store.glass_cases(100).await?;
        Ok(Value::Array(
            cases
                .iter()
                .map(|c| {
                    json!({"case_id": c.id, "state": c.state, "sealed_by": c.sealed_by,
                           "created_at": rfc3339(c.created_at), "expires_at": rfc3339(c.expires_at),
                           "expired": c.expires_at <= now,
                           "threshold": c.threshold, "custodians": c.custodians})
                })
                .collect(),
        ))
    }

    /// Queues the "runs out soon" alert of each sealed case within the policy's
    /// `glass_case.warn_before` (default 3 days) of its end (once per case). Returns how many.
    pub async fn warn_expiring_glass_cases(&self) -> Result<usize, ApiError> {
        let now = self.now();
        let warn_before = self.policy().set.glass_case.warn_before;
        let due = self
            .store
            .glass_cases_expiring(now.plus(warn_before))
            .await?;
        for c in &due {
            self.commit(
                vec![Change::WarnGlassCase {
                    id: c.id.clone(),
                    at: now,
                }],
                vec![event(
                    now,
                    "glass_case.expiring",
                    Some("system"),
                    None,
                    json!({"case_id": c.id, "expires_at": rfc3339(c.expires_at),
                           "hint": format!("reseal before then: breakglass glass-case seal --custodians {} --threshold {} --days 14",
                                           c.custodians.join(","), c.threshold)}),
                )],
            )
            .await?;
        }
        Ok(due.len())
    }
}
