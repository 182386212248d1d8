//! The offline glass case (admins, MFA): sealing a ladder of future-dated SSH certificates and
//! the sealed secrets for M of N custodians, and reconciling the signed journal of an opening.
//!
//! The server builds the case's contents and keeps only what it needs to undo it: the serials
//! of every certificate (all of them join the KRL on reconcile, used or not) and the public
//! half of the case's journal key. The CLI splits and encrypts the contents for the custodians
//! (`core::glass_case`), so no custodian passphrase ever reaches the server.

use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::glass_case::{
    self as gc, BUNDLE_FORMAT, ChainHead, Header, LadderCert, Payload, SecretItem,
};
use breakglass_core::grant::{self, AnyGrant, Approval, GrantInfo};
use breakglass_core::policy::ResourceKind;
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, GlassCase, GlassSerial};
use rand::RngCore;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Alert this long before a sealed case's last certificate runs out.
pub const WARN_BEFORE: Duration = Duration::from_secs(3 * 86_400);
/// Most journals one reconcile takes (one per opening).
const MAX_JOURNALS: usize = 32;

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
        if ssh.is_empty() && secret_resources.is_empty() {
            return Err(ApiError::bad(
                "the policy has no ssh or secret resources: a glass case would be empty",
            ));
        }
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
        let mut resources: Vec<String> = certificates.iter().map(|c| c.resource.clone()).collect();
        resources.extend(secrets.iter().map(|s| s.resource.clone()));
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
            journal_key: gc::bundle::b64(seed.as_ref()),
        };
        // Last: a code is spent only on a seal that is committed with it.
        let (mut changes, mut events, _mfa) =
            self.verify_mfa(who, otp, "sealing a glass case").await?;
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
        });
        self.commit(changes, events).await?;
        Ok(json!({"header": header, "payload": payload}))
    }

    /// Imports the signed journals of a case's openings: audit events, a review per released
    /// resource (as an ended grant), every serial of the case into the KRL, released secrets
    /// flagged must-rotate. The journals are verified before anything changes.
    pub async fn glass_case_reconcile(
        &self,
        who: &Principal,
        journals: &[String],
        otp: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.admin_only(who, "reconciling a glass case")?;
        if journals.is_empty() || journals.len() > MAX_JOURNALS {
            return Err(ApiError::bad_hint(
                format!("give 1 to {MAX_JOURNALS} journals"),
                "pass the file `glass-case open` wrote: --journal FILE",
            ));
        }
        let bad = |e: gc::GlassCaseError| ApiError::bad(e.to_string());
        let case_id = gc::peek_case_id(journals[0].as_bytes()).map_err(bad)?;
        if journals
            .iter()
            .any(|j| gc::peek_case_id(j.as_bytes()).ok().as_ref() != Some(&case_id))
        {
            return Err(ApiError::bad(
                "the journals are from different glass cases: reconcile one case at a time",
            ));
        }
        let Some(case) = self.store.glass_case(&case_id).await? else {
            return Err(ApiError::NotFound(format!(
                "no glass case {case_id:.64} was sealed by this server"
            )));
        };
        let key: [u8; 32] = case
            .journal_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::Internal("stored journal key is not 32 bytes".into()))?;
        let mut bodies = Vec::new();
        for j in journals {
            match gc::verify_journal(j.as_bytes(), &key) {
                Ok(b) => bodies.push(b),
                Err(e) => {
                    // Audited, nothing else changes.
                    self.audit_only(vec![event(
                        self.now(),
                        "glass_case.journal_refused",
                        Some(&who.name),
                        None,
                        json!({"case_id": case_id, "why": e.to_string()}),
                    )])
                    .await?;
                    return Err(bad(e));
                }
            }
        }
        if case.state != "sealed" {
            return Err(ApiError::Conflict(format!(
                "glass case {case_id} was reconciled already: its certificates are in the KRL"
            )));
        }
        let serials: BTreeMap<u64, GlassSerial> = self
            .store
            .glass_case_serials(&case_id)
            .await?
            .into_iter()
            .map(|s| (s.serial, s))
            .collect();
        for b in &bodies {
            for r in &b.releases {
                super::check_text("resource", &r.resource, 128)?;
                if r.kind != "ssh-certificate" && r.kind != "secret" {
                    return Err(ApiError::bad(format!(
                        "the journal lists an item of unknown kind {:.32?}",
                        r.kind
                    )));
                }
                if r.kind == "ssh-certificate"
                    && r.serial
                        .and_then(|s| serials.get(&s))
                        .is_none_or(|s| s.resource != r.resource)
                {
                    return Err(ApiError::bad(format!(
                        "the journal lists a certificate (serial {:?}) that case {case_id} never held",
                        r.serial
                    )));
                }
            }
            for c in &b.custodians {
                super::check_text("custodian", c, 64)?;
            }
            super::check_text("host", &b.host, 256)?;
        }
        let (mut changes, mut events, _mfa) = self
            .verify_mfa(who, otp, "reconciling a glass case")
            .await?;
        let now = self.now();
        let policy = self.policy();
        let mut reviews = Vec::new();
        let mut must_rotate = Vec::new();
        for (n, b) in bodies.iter().enumerate() {
            events.push(event(
                now,
                "glass_case.opened",
                Some(&who.name),
                None,
                json!({"case_id": case_id, "opened_at": rfc3339(Timestamp(b.opened_at)),
                       "custodians": b.custodians, "host": b.host,
                       "releases": b.releases.len()}),
            ));
            // One ended grant per released resource: the review and the secret's rotation flag
            // come from ending it, as for any grant that had access.
            let mut by_resource: BTreeMap<&str, Vec<&gc::Release>> = BTreeMap::new();
            for r in &b.releases {
                by_resource.entry(&r.resource).or_default().push(r);
            }
            for (i, (resource, rels)) in by_resource.into_iter().enumerate() {
                let at = Timestamp(rels.iter().map(|r| r.at).min().unwrap_or(b.opened_at));
                let info = GrantInfo {
                    id: format!("{case_id}-{}-{}", n + 1, i + 1),
                    user: "glass-case".into(),
                    resource: resource.to_string(),
                    policy: "glass-case".into(),
                    reason: format!(
                        "offline glass case {case_id} opened by {}",
                        b.custodians.join(", ")
                    ),
                    ticket: None,
                    requested_at: at,
                    duration_ms: gc::DAY_MS as u64,
                    max_ms: gc::DAY_MS as u64,
                    review_by: policy.set.admins.groups.clone(),
                    review_within_ms: None,
                    notify: vec![],
                    flags: vec![],
                    ssh_public_key: None,
                    drill: false,
                    training: None,
                    rev: 0,
                };
                let AnyGrant::Active(active) = grant::request(info, &Approval::Auto, at) else {
                    return Err(ApiError::Internal("auto approval did not activate".into()));
                };
                for r in &rels {
                    events.push(event(
                        Timestamp(r.at),
                        "glass_case.released",
                        Some("glass-case"),
                        Some(&active.info),
                        json!({"case_id": case_id, "kind": r.kind, "serial": r.serial,
                               "version": r.version, "custodians": b.custodians}),
                    ));
                }
                let ended =
                    active
                        .clone()
                        .revoke(&who.name, Some("glass case reconciled".into()), now);
                reviews.push(ended.info.id.clone());
                if policy
                    .set
                    .resource(resource)
                    .is_some_and(|r| r.kind == ResourceKind::Secret)
                {
                    must_rotate.push(resource.to_string());
                }
                changes.push(Change::InsertGrant(AnyGrant::Active(active)));
                changes.push(Change::UpdateGrant {
                    expected_state: "active",
                    grant: AnyGrant::Ended(ended),
                });
            }
        }
        events.push(event(
            now,
            "glass_case.reconciled",
            Some(&who.name),
            None,
            json!({"case_id": case_id, "journals": bodies.len(),
                   "serials_revoked": serials.len(), "reviews": reviews,
                   "must_rotate": must_rotate}),
        ));
        changes.push(Change::ReconcileGlassCase {
            id: case_id.clone(),
            at: now,
        });
        self.commit(changes, events).await?;
        let reseal = format!(
            "breakglass glass-case seal --custodians {} --threshold {} --days N",
            case.custodians.join(","),
            case.threshold
        );
        Ok(json!({"case_id": case_id, "journals": bodies.len(),
                  "serials_revoked": serials.len(), "reviews": reviews,
                  "must_rotate": must_rotate, "reseal": reseal}))
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

    /// Queues the "runs out soon" alert of each sealed case within [`WARN_BEFORE`] of its end
    /// (once per case). Returns how many.
    pub async fn warn_expiring_glass_cases(&self) -> Result<usize, ApiError> {
        let now = self.now();
        let due = self
            .store
            .glass_cases_expiring(now.plus(WARN_BEFORE))
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
