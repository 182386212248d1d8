//! The engine: every use case of breakglass, tying the pure core (policy, grant state machine,
//! MFA rules, audit encoding) to the store. Each use case loads what it needs, decides with the
//! core, and commits the change together with its audit events in one transaction. A refusal is
//! audited too. If the audit write fails, the action fails and nothing changes.

use crate::error::{ApiError, MFA_CONFLICT};
use crate::hash_pool::HashPool;
use crate::keys::Keys;
use crate::login_throttle::{LoginThrottle, ThrottleConfig};
use crate::metrics::Metrics;
use breakglass_core::audit::NewEvent;
use breakglass_core::grant::{self, AnyGrant, Approved, GrantInfo, TimedOut};
use breakglass_core::mfa::{self, MfaRules, TotpOutcome};
use breakglass_core::policy::{self, AccessRequest, PolicySet};
use breakglass_core::time::Timestamp;
use breakglass_core::{duration, time};
use breakglass_store::{Change, GrantFilter, Session, Store, User};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Where time comes from. The system clock in production; tests inject their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// The policy in force and where it came from.
pub struct LoadedPolicy {
    pub set: PolicySet,
    pub sha256: String,
    pub path: Option<PathBuf>,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub mfa: MfaRules,
    pub session_ttl: Duration,
    /// Wrong passwords slow further logins (per account and source); see `login_throttle`.
    pub login_throttle: ThrottleConfig,
    /// Wake the checkpointer after this many new audit events.
    pub checkpoint_every_events: u64,
    /// Where people reach this server (links in alerts), e.g. https://breakglass.example.org.
    pub public_url: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mfa: MfaRules::default(),
            session_ttl: Duration::from_secs(12 * 3600),
            login_throttle: ThrottleConfig::default(),
            checkpoint_every_events: 1000,
            public_url: None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
}

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub clock: Arc<dyn Clock>,
    pub config: EngineConfig,
    pub metrics: Metrics,
    policy: RwLock<Arc<LoadedPolicy>>,
    /// Wakes the expiry timer when a new deadline may be earlier than the one it sleeps to.
    pub wake: Notify,
    /// Wakes the checkpointer.
    pub checkpoint_wake: Notify,
    /// Wakes the alert dispatcher when alerts are queued.
    pub alert_wake: Notify,
    /// Wakes the revoker when credentials are queued for revocation.
    pub revoke_wake: Notify,
    login_throttle: LoginThrottle,
    /// Every password check on the server path runs here (bounded memory and CPU).
    pub hash_pool: HashPool,
    /// One lock per user, held from reading their MFA state to committing the action it
    /// allows: requests of one user on this node take turns (the store's compare-and-swap on
    /// the state guards against other nodes).
    mfa_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Fingerprint of the last policy text (or read error) that failed to load, so a broken
    /// file is audited once, not at every poll.
    last_policy_failure: Mutex<Option<String>>,
    dummy_hash: String,
}

// ---------- API views ----------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalView {
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantView {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub policy: String,
    pub state: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub requested_at: String,
    pub duration_secs: u64,
    pub max_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    pub approvals: Vec<ApprovalView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_needed: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_timeout_at: Option<String>,
    pub extensions: u32,
    pub now: String,
    /// Anomaly flags raised on this grant.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<breakglass_core::anomaly::Flag>,
    /// The credential issued at the target: returned ONCE, in the response that activated the
    /// grant for its requester; never stored, never repeated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential: Option<serde_json::Value>,
    /// Where the target credential stands (single-grant views): issued, revoking
    /// ("revocation pending", with attempts and last error) or revoked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential_status: Option<serde_json::Value>,
    /// The post-incident review, once the grant has ended (single-grant views only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub review: Option<serde_json::Value>,
}

impl GrantView {
    pub fn of(g: &AnyGrant, now: Timestamp) -> GrantView {
        let info = g.info();
        let ts = |t: Timestamp| time::rfc3339(t);
        let mut v = GrantView {
            id: info.id.clone(),
            user: info.user.clone(),
            resource: info.resource.clone(),
            policy: info.policy.clone(),
            state: g.state_name().to_string(),
            reason: info.reason.clone(),
            ticket: info.ticket.clone(),
            requested_at: ts(info.requested_at),
            duration_secs: info.duration_ms / 1000,
            max_secs: info.max_ms / 1000,
            activated_at: None,
            activated_via: None,
            expires_at: None,
            expires_at_ms: None,
            remaining_secs: None,
            ended_at: None,
            ended_by: None,
            end_reason: None,
            approvals: vec![],
            approvals_needed: None,
            approvers_from: vec![],
            approval_timeout_at: None,
            extensions: 0,
            now: ts(now),
            review: None,
            flags: info.flags.clone(),
            credential: None,
            credential_status: None,
        };
        let approvals = |a: &[grant::ApprovalRecord]| {
            a.iter()
                .map(|a| ApprovalView {
                    by: a.by.clone(),
                    at: ts(a.at),
                })
                .collect::<Vec<_>>()
        };
        let window = |v: &mut GrantView, w: &grant::Active| {
            v.activated_at = Some(ts(w.activated_at));
            v.activated_via = serde_json::to_value(w.via)
                .ok()
                .and_then(|x| x.as_str().map(String::from));
            v.expires_at = Some(ts(w.expires_at));
            v.expires_at_ms = Some(w.expires_at.0);
            v.extensions = u32::try_from(w.extensions.len()).unwrap_or(u32::MAX);
        };
        match g {
            AnyGrant::Pending(p) => {
                v.approvals = approvals(&p.state.approvals);
                v.approvals_needed = Some(p.state.needed);
                v.approvers_from = p.state.from.clone();
                v.approval_timeout_at = p.state.timeout_at.map(ts);
            }
            AnyGrant::Active(a) => {
                window(&mut v, &a.state);
                v.approvals = approvals(&a.state.approvals);
                v.remaining_secs = Some(now.until(a.state.expires_at).as_secs());
            }
            AnyGrant::Ended(e) => {
                if let Some(w) = &e.state.window {
                    window(&mut v, w);
                }
                v.approvals = approvals(&e.state.approvals);
                v.ended_at = Some(ts(e.state.ended_at));
                match &e.state.outcome {
                    grant::Outcome::Revoked { by, reason } => {
                        v.ended_by = Some(by.clone());
                        v.end_reason = reason.clone();
                    }
                    grant::Outcome::Denied { by, reason } => {
                        v.ended_by = Some(by.clone());
                        v.end_reason = Some(reason.clone());
                    }
                    grant::Outcome::Cancelled { by } => v.ended_by = Some(by.clone()),
                    grant::Outcome::Expired | grant::Outcome::TimedOut => {}
                }
            }
        }
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginOutput {
    pub token: String,
    pub user: String,
    pub groups: Vec<String>,
    pub expires_at: String,
    pub totp_enrolled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollOutput {
    pub otpauth_uri: String,
    pub secret_base32: String,
}

/// Input of a break-glass request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub resource: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// `90s`, `30m`, `2h`; the policy default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub otp: Option<String>,
    /// The requester's OpenSSH public key (used for `kind: ssh` resources, ignored otherwise).
    #[serde(default)]
    pub ssh_public_key: Option<String>,
}

// ---------- helpers ----------

/// Held by a use case from reading the user's MFA state until its action is committed (or
/// refused): see [`Engine::mfa_lock`]. Dropping it lets the user's next request in.
#[must_use = "keep the MFA lock until the action it allows is committed"]
pub struct MfaLock(#[allow(dead_code)] Option<tokio::sync::OwnedMutexGuard<()>>);

impl MfaLock {
    /// For actions that need no MFA.
    pub fn none() -> Self {
        MfaLock(None)
    }
}

/// A verified code: the MFA state change and evidence to commit WITH the action, and the lock.
pub type MfaPass = (Vec<Change>, Vec<NewEvent>, MfaLock);

/// How often a use case re-reads a state that another node changed under it before giving up.
const CAS_RETRIES: usize = 8;

/// SHA-256 of a session token (tokens are 256-bit random, so a fast hash is enough).
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "bgs_{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b)
    )
}

fn new_grant_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("g-{}", hex::encode(b))
}

/// Hashes a password with Argon2id (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

/// Checks a user or group name.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        })
}

/// The one check of text a user types (reason, ticket, resource, review notes): bounded, and
/// no control characters other than newline and tab, no invisible or bidi characters
/// (`crate::text::invisible`), which would let the text read differently wherever it is shown.
pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::bad(format!(
            "{field} is longer than {max} characters"
        )));
    }
    for c in value.chars() {
        if let Some(name) = crate::text::invisible(c) {
            return Err(ApiError::bad(format!(
                "{field} contains the invisible character {} ({name}); remove it",
                crate::text::code_point(c)
            )));
        }
        if c.is_control() && c != '\n' && c != '\t' {
            return Err(ApiError::bad(format!(
                "{field} contains the control character {}; remove it",
                crate::text::code_point(c)
            )));
        }
    }
    Ok(())
}

pub fn event(
    now: Timestamp,
    kind: &str,
    actor: Option<&str>,
    grant: Option<&GrantInfo>,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent {
        ts_ms: now.0,
        kind: kind.to_string(),
        actor: actor.map(String::from),
        grant_id: grant.map(|g| g.id.clone()),
        resource: grant.map(|g| g.resource.clone()),
        data,
    }
}

fn to_grant_approval(a: &policy::Approval) -> Option<grant::Approval> {
    match a {
        policy::Approval::Auto => Some(grant::Approval::Auto),
        policy::Approval::Quorum {
            count,
            from,
            timeout,
            on_timeout,
        } => Some(grant::Approval::Quorum {
            count: *count,
            from: from.clone(),
            timeout: *timeout,
            on_timeout: match on_timeout {
                policy::OnTimeout::Deny => grant::OnTimeout::Deny,
                policy::OnTimeout::Auto => grant::OnTimeout::Auto,
            },
        }),
        policy::Approval::Deny => None,
    }
}

/// What a sealed credential awaiting pickup is bound to.
fn pickup_aad(grant_id: &str) -> String {
    format!("credential-pickup:{grant_id}")
}

/// Parses and fingerprints a policy text.
pub fn load_policy_text(text: &str, path: Option<PathBuf>) -> Result<LoadedPolicy, String> {
    let set = PolicySet::parse(text).map_err(|e| e.to_string())?;
    let bad = breakglass_connectors::check_all(&set.resources);
    if !bad.is_empty() {
        return Err(bad.join("\n"));
    }
    Ok(LoadedPolicy {
        set,
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        path,
    })
}

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

    pub fn new(
        store: Arc<dyn Store>,
        keys: Keys,
        policy: LoadedPolicy,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        let login_throttle = config.login_throttle.clone();
        Engine {
            store,
            keys,
            clock,
            config,
            metrics: Metrics::default(),
            policy: RwLock::new(Arc::new(policy)),
            wake: Notify::new(),
            checkpoint_wake: Notify::new(),
            alert_wake: Notify::new(),
            revoke_wake: Notify::new(),
            login_throttle: LoginThrottle::new(login_throttle),
            hash_pool: HashPool::for_machine(),
            mfa_locks: Mutex::new(HashMap::new()),
            last_policy_failure: Mutex::new(None),
            dummy_hash: hash_password("breakglass-dummy-password").unwrap_or_default(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Waits for `user`'s MFA lock. Locks nobody holds are dropped from the map as it grows.
    pub async fn mfa_lock(&self, user: &str) -> MfaLock {
        let lock = {
            let mut map = match self.mfa_locks.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if map.len() >= 1024 {
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(user.to_string()).or_default().clone()
        };
        MfaLock(Some(lock.lock_owned().await))
    }

    pub fn policy(&self) -> Arc<LoadedPolicy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Appends events and applies changes atomically; a failure here aborts the action.
    pub async fn commit(
        &self,
        mut changes: Vec<Change>,
        mut events: Vec<NewEvent>,
    ) -> Result<(), ApiError> {
        // An MFA verification committed with a grant's events is evidence for that grant.
        if let Some((gid, res)) = events
            .iter()
            .find_map(|e| e.grant_id.clone().map(|g| (g, e.resource.clone())))
        {
            for e in events
                .iter_mut()
                .filter(|e| e.grant_id.is_none() && e.kind.starts_with("mfa."))
            {
                e.grant_id = Some(gid.clone());
                e.resource.clone_from(&res);
            }
        }
        // Every grant that had access gets a post-incident review when it ends.
        let reviews: Vec<_> = changes
            .iter()
            .flat_map(|c| [self.review_for(c), self.secret_rotation_for(c)])
            .flatten()
            .collect();
        // A grant that had access ends: its target credential is queued for revocation in the
        // same transaction (a no-op for grants without one).
        let revocations: Vec<Change> = changes
            .iter()
            .filter_map(|c| match c {
                Change::UpdateGrant {
                    expected_state: "active",
                    grant: AnyGrant::Ended(e),
                } => Some(Change::StartRevocation {
                    grant_id: e.info.id.clone(),
                    at: e.state.ended_at,
                }),
                _ => None,
            })
            .collect();
        let revoking = !revocations.is_empty();
        changes.extend(revocations);
        for (change, ev) in reviews {
            changes.push(change);
            events.push(ev);
        }
        let n = events.len() as u64;
        // Alerts go in the same transaction as the events they report: never lost.
        let alerts = crate::alerts::enqueue(
            &self.policy().set,
            &self.keys.origin,
            self.config.public_url.as_deref(),
            &changes,
            &events,
        );
        let alerted = !alerts.is_empty();
        changes.extend(alerts);
        self.store.commit(changes, events).await?;
        if alerted {
            self.alert_wake.notify_one();
        }
        if revoking {
            self.revoke_wake.notify_one();
        }
        let before = self.metrics.audit_events.add(n);
        let every = self.config.checkpoint_every_events.max(1);
        if (before + n) / every != before / every {
            self.checkpoint_wake.notify_one();
        }
        Ok(())
    }

    /// The review to open when `change` ends an active grant.
    fn review_for(&self, change: &Change) -> Option<(Change, NewEvent)> {
        let Change::UpdateGrant {
            expected_state: "active",
            grant: AnyGrant::Ended(e),
        } = change
        else {
            return None;
        };
        let info = &e.info;
        let now = e.state.ended_at;
        let within = Duration::from_millis(info.review_within_ms.unwrap_or(72 * 3600 * 1000));
        let by = if info.review_by.is_empty() {
            self.policy().set.admins.groups.clone()
        } else {
            info.review_by.clone()
        };
        let due = now.plus(within);
        Some((
            Change::OpenReview(breakglass_store::Review {
                grant_id: info.id.clone(),
                requester: info.user.clone(),
                opened_at: now,
                due_at: due,
                by: by.clone(),
                state: "open".into(),
                escalated_at: None,
            }),
            event(
                now,
                "review.opened",
                Some("system"),
                Some(info),
                json!({"due_at": time::rfc3339(due), "by": by}),
            ),
        ))
    }

    /// Records events that go with no change (refusals, failed logins).
    pub(crate) async fn audit_only(&self, events: Vec<NewEvent>) -> Result<(), ApiError> {
        self.commit(vec![], events).await
    }

    /// Re-reads the policy file. An invalid file keeps the old policy; the failure is audited.
    pub async fn reload_policy(&self) -> Result<bool, ApiError> {
        let current = self.policy();
        let Some(path) = current.path.clone() else {
            return Ok(false);
        };
        let now = self.now();
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", path.display());
                if !self.first_policy_failure(&msg) {
                    return Ok(false);
                }
                tracing::error!(%msg, "policy reload failed; keeping the policy in force");
                self.audit_only(vec![event(
                    now,
                    "policy.reload_failed",
                    Some("system"),
                    None,
                    json!({"path": path.display().to_string(), "error": msg, "kept_sha256": current.sha256}),
                )])
                .await?;
                self.metrics.policy_reload_failures.inc();
                return Ok(false);
            }
        };
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        if sha == current.sha256 {
            self.clear_policy_failure();
            return Ok(false);
        }
        match load_policy_text(&text, Some(path.clone())) {
            Ok(loaded) => {
                self.audit_only(vec![event(
                    now,
                    "policy.loaded",
                    Some("system"),
                    None,
                    json!({"path": path.display().to_string(), "sha256": loaded.sha256, "previous_sha256": current.sha256}),
                )])
                .await?;
                tracing::info!(sha256 = %loaded.sha256, "policy reloaded");
                self.clear_policy_failure();
                if let Ok(mut p) = self.policy.write() {
                    *p = Arc::new(loaded);
                }
                Ok(true)
            }
            Err(err) => {
                if !self.first_policy_failure(&sha) {
                    return Ok(false);
                }
                tracing::error!(%err, "invalid policy file; keeping the policy in force");
                self.audit_only(vec![event(
                    now,
                    "policy.reload_failed",
                    Some("system"),
                    None,
                    json!({"path": path.display().to_string(), "error": err, "sha256": sha, "kept_sha256": current.sha256}),
                )])
                .await?;
                self.metrics.policy_reload_failures.inc();
                Ok(false)
            }
        }
    }

    /// True the first time this failure fingerprint is seen in a row.
    fn first_policy_failure(&self, fingerprint: &str) -> bool {
        match self.last_policy_failure.lock() {
            Ok(last) if last.as_deref() == Some(fingerprint) => false,
            Ok(mut last) => {
                *last = Some(fingerprint.to_string());
                true
            }
            Err(_) => true,
        }
    }

    fn clear_policy_failure(&self) {
        if let Ok(mut last) = self.last_policy_failure.lock() {
            *last = None;
        }
    }

    // ---------- authentication ----------

    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.len() > 128 {
            return Err(ApiError::Unauthenticated);
        }
        let Some(session) = self.store.session(&token_hash(token)).await? else {
            return Err(ApiError::Unauthenticated);
        };
        if session.expires_at <= self.now() {
            return Err(ApiError::Unauthenticated);
        }
        match self.store.user(&session.user).await? {
            Some(u) if !u.disabled => Ok(Principal {
                name: u.name,
                groups: u.groups,
            }),
            _ => Err(ApiError::Unauthenticated),
        }
    }

    /// Logs in `user` from `source` (the TCP peer). Wrong passwords slow further tries (see
    /// [`crate::login_throttle`]); a throttled try is refused with 429 before any check.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        otp: Option<&str>,
        source: std::net::IpAddr,
    ) -> Result<LoginOutput, ApiError> {
        if !valid_name(user) || password.len() > 1024 {
            return Err(ApiError::InvalidCredentials);
        }
        let now = self.now();
        let attempt = match self.login_throttle.reserve(user, source, now) {
            Ok(a) => a,
            Err(refusal) => {
                self.metrics.logins_throttled.inc();
                self.audit_only(crate::login_throttle::burst_events(now, &refusal.bursts))
                    .await?;
                return Err(crate::login_throttle::refusal_error(user, source, &refusal));
            }
        };
        let record = self.store.user(user).await?;
        let phc = record
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let pw = zeroize::Zeroizing::new(password.to_string());
        let check = move |mem: &mut _| crate::hash_pool::verify(mem, pw.as_bytes(), &phc);
        let ok = match self.hash_pool.run(check).await {
            Ok(ok) => ok,
            Err(e) => {
                self.metrics.logins_busy.inc();
                return Err(e);
            }
        };
        let user_rec = match record {
            Some(u) if ok && !u.disabled => u,
            other => {
                let src = attempt.source();
                let bursts = attempt.failed(now);
                let mut events = vec![event(
                    now,
                    "auth.login_failed",
                    Some(user),
                    None,
                    json!({"known_user": other.is_some(), "disabled": other.map(|u| u.disabled).unwrap_or(false), "source": src}),
                )];
                events.extend(crate::login_throttle::burst_events(now, &bursts));
                self.audit_only(events).await?;
                return Err(ApiError::InvalidCredentials);
            }
        };
        attempt.succeeded();
        let principal = Principal {
            name: user_rec.name.clone(),
            groups: user_rec.groups.clone(),
        };
        let mfa_rec = self.store.mfa(user).await?;
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let mut _mfa = MfaLock::none();
        if let Some(code) = otp {
            let (c, e, lock) = self.verify_mfa(&principal, Some(code), "login").await?;
            changes.extend(c);
            events.extend(e);
            _mfa = lock;
        }
        let token = random_token();
        let expires_at = now.plus(self.config.session_ttl);
        changes.push(Change::CreateSession {
            token_hash: token_hash(&token),
            session: Session {
                user: user.to_string(),
                created_at: now,
                expires_at,
            },
        });
        events.push(event(
            now,
            "auth.login",
            Some(user),
            None,
            json!({"mfa": otp.is_some(), "session_expires_at": time::rfc3339(expires_at)}),
        ));
        self.commit(changes, events).await?;
        Ok(LoginOutput {
            token,
            user: user_rec.name,
            groups: user_rec.groups,
            expires_at: time::rfc3339(expires_at),
            totp_enrolled: mfa_rec.totp_confirmed,
        })
    }

    pub async fn logout(&self, token: &str, who: &Principal) -> Result<(), ApiError> {
        self.commit(
            vec![Change::DeleteSession {
                token_hash: token_hash(token),
            }],
            vec![event(
                self.now(),
                "auth.logout",
                Some(&who.name),
                None,
                json!({}),
            )],
        )
        .await
    }

    // ---------- MFA ----------

    pub async fn totp_enroll(&self, who: &Principal) -> Result<EnrollOutput, ApiError> {
        let rec = self.store.mfa(&who.name).await?;
        if rec.totp_confirmed {
            return Err(ApiError::Conflict(format!(
                "{} already has a confirmed TOTP authenticator; an admin must reset it first (`breakglass admin user reset-mfa {}`)",
                who.name, who.name
            )));
        }
        let mut secret = zeroize::Zeroizing::new([0u8; mfa::SECRET_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut secret[..]);
        let sealed = self.keys.kek.seal(&totp_aad(&who.name), &secret[..]);
        self.commit(
            vec![Change::PutTotp {
                user: who.name.clone(),
                sealed: Some(sealed),
                confirmed: false,
            }],
            vec![event(
                self.now(),
                "mfa.totp_enrolment_started",
                Some(&who.name),
                None,
                json!({}),
            )],
        )
        .await?;
        Ok(EnrollOutput {
            otpauth_uri: mfa::otpauth_uri("breakglass", &who.name, &secret[..]),
            secret_base32: mfa::secret_base32(&secret[..]),
        })
    }

    pub async fn totp_confirm(&self, who: &Principal, code: &str) -> Result<(), ApiError> {
        let lock = self.mfa_lock(&who.name).await;
        let rec = self.store.mfa(&who.name).await?;
        if rec.totp_sealed.is_none() {
            return Err(ApiError::bad_hint(
                "no TOTP enrolment in progress",
                "run `breakglass mfa totp enroll` first",
            ));
        }
        if rec.totp_confirmed {
            return Err(ApiError::Conflict("TOTP is already confirmed".into()));
        }
        let sealed = rec.totp_sealed.clone();
        let (mut changes, mut events, _lock) =
            self.check_code(who, rec, code, "enrol", lock).await?;
        // Confirming keeps the guessing state just written (so the code cannot be reused); it
        // comes after the state's compare-and-swap, which names the version read above.
        changes.push(Change::PutTotp {
            user: who.name.clone(),
            sealed,
            confirmed: true,
        });
        events.push(event(
            self.now(),
            "mfa.totp_enrolled",
            Some(&who.name),
            None,
            json!({}),
        ));
        self.commit(changes, events).await
    }

    /// Verifies a fresh TOTP code. On success returns the state change and audit event to commit
    /// WITH the action, and the user's MFA lock to hold until then; on failure commits the
    /// failure (state + audit) itself and returns an error. Under any concurrency a code is
    /// accepted once and every wrong code is counted: the user's requests take turns on this
    /// node, and the store applies the state only at the version it was computed from.
    pub async fn verify_mfa(
        &self,
        who: &Principal,
        otp: Option<&str>,
        purpose: &str,
    ) -> Result<MfaPass, ApiError> {
        let lock = self.mfa_lock(&who.name).await;
        let rec = self.store.mfa(&who.name).await?;
        if !rec.totp_confirmed {
            self.audit_only(vec![event(
                self.now(),
                "mfa.refused",
                Some(&who.name),
                None,
                json!({"purpose": purpose, "why": "not-enrolled"}),
            )])
            .await?;
            return Err(ApiError::Mfa {
                slug: "mfa-not-enrolled",
                message: format!("{purpose} needs MFA but {} has no authenticator", who.name),
                hint: Some(
                    "run `breakglass mfa totp enroll`, add the URI to an authenticator app, then `breakglass mfa totp confirm CODE`".into(),
                ),
            });
        }
        let Some(code) = otp else {
            return Err(ApiError::Mfa {
                slug: "mfa-required",
                message: format!("{purpose} needs a fresh one-time code from your authenticator"),
                hint: Some("pass --otp CODE (or run on a terminal to be prompted)".into()),
            });
        };
        self.check_code(who, rec, code, purpose, lock).await
    }

    async fn check_code(
        &self,
        who: &Principal,
        mut rec: breakglass_store::MfaRecord,
        code: &str,
        purpose: &str,
        lock: MfaLock,
    ) -> Result<MfaPass, ApiError> {
        let mut attempt = 0;
        loop {
            match self.check_code_once(who, &rec, code, purpose).await {
                Ok((changes, events)) => return Ok((changes, events, lock)),
                // Another node wrote the state between our read and our write: judge the code
                // again against what is stored now.
                Err(ApiError::Mfa { slug, .. })
                    if slug == MFA_CONFLICT && attempt < CAS_RETRIES =>
                {
                    attempt += 1;
                    rec = self.store.mfa(&who.name).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Judges one code against one read of the state; commits a failure with a compare-and-swap.
    async fn check_code_once(
        &self,
        who: &Principal,
        rec: &breakglass_store::MfaRecord,
        code: &str,
        purpose: &str,
    ) -> Result<(Vec<Change>, Vec<NewEvent>), ApiError> {
        let now = self.now();
        let sealed = rec.totp_sealed.as_deref().unwrap_or_default();
        let secret = self
            .keys
            .kek
            .open(&totp_aad(&who.name), sealed)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (outcome, state) = mfa::check_totp(&secret, code, now, &rec.state, &self.config.mfa);
        let change = Change::PutMfaState {
            user: who.name.clone(),
            expected_version: rec.version,
            state,
        };
        let (kind, err) = match outcome {
            TotpOutcome::Accepted { step } => {
                return Ok((
                    vec![change],
                    vec![event(
                        now,
                        "mfa.verified",
                        Some(&who.name),
                        None,
                        json!({"purpose": purpose, "method": "totp", "step": step}),
                    )],
                ));
            }
            TotpOutcome::Malformed => {
                return Err(ApiError::bad_hint(
                    "a TOTP code is 6 digits",
                    "type the 6-digit code your authenticator app shows",
                ));
            }
            TotpOutcome::Locked { until } => (
                "mfa.refused_locked",
                ApiError::Mfa {
                    slug: "mfa-locked",
                    message: format!(
                        "MFA for {} is locked after too many wrong codes until {until}",
                        who.name
                    ),
                    hint: Some("wait for the lock-out to end or ask the security team".into()),
                },
            ),
            TotpOutcome::Wrong { remaining } => (
                "mfa.failed",
                ApiError::Mfa {
                    slug: "mfa-invalid",
                    message: format!(
                        "wrong one-time code; {remaining} tries left before MFA locks"
                    ),
                    hint: Some("check your authenticator app and the device clock".into()),
                },
            ),
            TotpOutcome::Replayed { remaining } => (
                "mfa.replayed",
                ApiError::Mfa {
                    slug: "mfa-replayed",
                    message: format!(
                        "this one-time code was already used; wait for the next code ({remaining} tries left)"
                    ),
                    hint: Some("codes are single-use: wait up to 30 s for a new one".into()),
                },
            ),
            TotpOutcome::LockedNow { until } => (
                "mfa.locked",
                ApiError::Mfa {
                    slug: "mfa-locked",
                    message: format!(
                        "too many wrong codes: MFA for {} is locked until {until}",
                        who.name
                    ),
                    hint: Some("the security team has been told; wait or ask them".into()),
                },
            ),
        };
        self.metrics.mfa_failures.inc();
        let changes = if matches!(outcome, TotpOutcome::Locked { .. }) {
            vec![]
        } else {
            vec![change]
        };
        self.commit(
            changes,
            vec![event(
                now,
                kind,
                Some(&who.name),
                None,
                json!({"purpose": purpose}),
            )],
        )
        .await?;
        Err(err)
    }

    // ---------- grants ----------

    async fn refuse(
        &self,
        who: &Principal,
        resource: &str,
        grant_id: Option<&str>,
        code: &str,
        message: &str,
        extra: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.metrics.refusals.inc();
        self.audit_only(vec![NewEvent {
            ts_ms: self.now().0,
            kind: "grant.refused".into(),
            actor: Some(who.name.clone()),
            grant_id: grant_id.map(String::from),
            resource: Some(resource.to_string()),
            data: json!({"code": code, "message": message, "request": extra}),
        }])
        .await
    }

    pub async fn request(
        &self,
        who: &Principal,
        input: RequestInput,
    ) -> Result<GrantView, ApiError> {
        check_text("resource", &input.resource, 64)?;
        check_text("reason", &input.reason, 2000)?;
        if let Some(t) = &input.ticket {
            check_text("ticket", t, 128)?;
        }
        let requested = match input.duration.as_deref() {
            None | Some("") => None,
            Some(d) => Some(duration::parse(d).map_err(|e| ApiError::bad(e.to_string()))?),
        };
        let policy = self.policy();
        let now = self.now();
        let req = AccessRequest {
            user: &who.name,
            groups: &who.groups,
            resource: &input.resource,
            reason: &input.reason,
            ticket: input.ticket.as_deref(),
            duration: requested,
            now,
        };
        let summary = json!({
            "reason": input.reason, "ticket": input.ticket, "duration": input.duration,
        });
        let decision = match policy.set.evaluate(&req) {
            Ok(d) => d,
            Err(refusal) => {
                self.refuse(
                    who,
                    &input.resource,
                    None,
                    refusal.code.as_str(),
                    &refusal.message,
                    summary,
                )
                .await?;
                return Err(ApiError::Refused(refusal));
            }
        };
        let Some(approval) = to_grant_approval(&decision.approval) else {
            let msg = format!(
                "policy {} denies access to {}",
                decision.policy, input.resource
            );
            self.refuse(
                who,
                &input.resource,
                None,
                "denied-by-policy",
                &msg,
                summary,
            )
            .await?;
            return Err(ApiError::Forbidden(msg));
        };
        // Input the target needs is checked before the MFA code is spent.
        let ssh_public_key = match policy.set.resource(&input.resource).map(|r| r.kind) {
            Some(policy::ResourceKind::Ssh) => {
                let text = input.ssh_public_key.as_deref().ok_or_else(|| {
                    ApiError::bad(format!(
                        "{} is an SSH resource: send your public key (CLI: --ssh-key ~/.ssh/id_ed25519.pub)",
                        input.resource
                    ))
                })?;
                breakglass_connectors::ssh::parse_public_key(text)
                    .map_err(|e| ApiError::bad(e.to_string()))?;
                Some(text.trim().to_string())
            }
            _ => None,
        };
        let (mut changes, mut events, _mfa) = if decision.mfa_required {
            match self.verify_mfa(who, input.otp.as_deref(), "request").await {
                Ok(x) => x,
                Err(e) => {
                    if matches!(&e, ApiError::Mfa { slug, .. } if *slug == "mfa-required") {
                        self.refuse(
                            who,
                            &input.resource,
                            None,
                            "mfa-required",
                            &e.to_string(),
                            summary,
                        )
                        .await?;
                    }
                    return Err(e);
                }
            }
        } else {
            (vec![], vec![], MfaLock::none())
        };
        let flags = self.request_flags(who, &input.resource, now).await?;
        let info = GrantInfo {
            rev: 0,
            flags,
            ssh_public_key,
            id: new_grant_id(),
            user: who.name.clone(),
            resource: input.resource.clone(),
            policy: decision.policy.clone(),
            reason: input.reason.trim().to_string(),
            ticket: input.ticket.as_ref().map(|t| t.trim().to_string()),
            requested_at: now,
            duration_ms: u64::try_from(decision.duration.as_millis()).unwrap_or(u64::MAX),
            max_ms: u64::try_from(decision.max.as_millis()).unwrap_or(u64::MAX),
            review_by: decision
                .review
                .as_ref()
                .map(|r| r.by.clone())
                .unwrap_or_default(),
            review_within_ms: decision
                .review
                .as_ref()
                .map(|r| u64::try_from(r.within.as_millis()).unwrap_or(u64::MAX)),
            notify: decision.notify.clone(),
        };
        let g = grant::request(info, &approval, now);
        let info = g.info();
        events.push(event(
            now,
            "grant.requested",
            Some(&who.name),
            Some(info),
            json!({
                "policy": info.policy, "reason": info.reason, "ticket": info.ticket,
                "duration_secs": info.duration_ms / 1000, "mfa": decision.mfa_required,
                "approval": match &approval { grant::Approval::Auto => "auto", grant::Approval::Quorum{..} => "quorum" },
            }),
        ));
        if !info.flags.is_empty() {
            self.metrics.anomalies.add(info.flags.len() as u64);
            events.push(event(
                now,
                "anomaly.flagged",
                Some("system"),
                Some(info),
                json!({"flags": info.flags}),
            ));
        }
        if let AnyGrant::Active(a) = &g {
            events.push(activation_event(now, &a.info, &a.state));
        }
        let mut issued = None;
        if let AnyGrant::Active(a) = &g
            && let Some((change, ev, out)) = self
                .issue_credential(&a.info, a.state.expires_at, false)
                .await
                .or_else_spend_mfa(self, &changes, &events)
                .await?
        {
            changes.push(change);
            events.push(ev);
            issued = Some(out);
        }
        changes.push(Change::InsertGrant(g.clone()));
        // Test hook for the crash window between "credential created at the target" and "grant
        // recorded" (the sweep must clean up after it). Never set in production.
        if issued.is_some() && std::env::var_os("BREAKGLASS_TEST_ABORT_AFTER_ISSUE").is_some() {
            std::process::abort();
        }
        if let Err(e) = self.commit(changes, events).await {
            if let Some((connector, handle, _)) = issued {
                // The grant was not recorded: take the credential back now (the sweep is the net).
                if let Err(re) = connector.revoke(&handle).await {
                    tracing::error!(grant = %g.id(), error = %re, "could not revoke a credential whose grant failed to record");
                }
            }
            return Err(e);
        }
        match &g {
            AnyGrant::Active(_) => self.metrics.activations.inc(),
            _ => self.metrics.pending.inc(),
        }
        self.wake.notify_one();
        let mut view = GrantView::of(&g, now);
        view.credential = issued.and_then(|(_, _, c)| c);
        Ok(view)
    }

    /// Issues the target credential for a grant that is becoming active. Returns the change and
    /// event to commit with the activation, plus (connector, handle, credential) for the caller.
    /// A target failure is audited and nothing is granted.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn issue_credential(
        &self,
        info: &GrantInfo,
        expires_at: Timestamp,
        for_pickup: bool,
    ) -> Result<
        Option<(
            Change,
            NewEvent,
            (
                Box<dyn breakglass_connectors::Connector>,
                serde_json::Value,
                Option<serde_json::Value>,
            ),
        )>,
        ApiError,
    > {
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
        let req = breakglass_connectors::IssueRequest {
            grant: info,
            now,
            expires_at,
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

    /// Anomaly flags for a new request (facts from the store, decision in the core).
    async fn request_flags(
        &self,
        who: &Principal,
        resource: &str,
        now: Timestamp,
    ) -> Result<Vec<breakglass_core::anomaly::Flag>, ApiError> {
        let policy = self.policy();
        let rules = &policy.set.anomalies;
        let since = |d: Duration| {
            Timestamp(
                now.0
                    .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            )
        };
        let (user_recent, resource_recent, had) = self
            .store
            .grant_stats(
                &who.name,
                resource,
                since(rules.per_user.1),
                since(rules.per_resource.1),
            )
            .await?;
        let mfa = self.store.mfa(&who.name).await?;
        let facts = breakglass_core::anomaly::Facts {
            user_recent,
            resource_recent,
            user_had_resource: had,
            lockout_until: mfa.state.last_lockout,
        };
        Ok(breakglass_core::anomaly::on_request(
            rules, &facts, &who.name, resource, now,
        ))
    }

    /// A grant held by `who` (anyone else's is reported as not found, revealing nothing).
    pub(crate) async fn load_own(&self, who: &Principal, id: &str) -> Result<AnyGrant, ApiError> {
        let g = self.load(id).await?;
        if g.info().user != who.name {
            return Err(ApiError::NotFound(format!("no grant {id:.64} of yours")));
        }
        Ok(g)
    }

    pub(crate) async fn load(&self, id: &str) -> Result<AnyGrant, ApiError> {
        if id.len() > 64 {
            return Err(ApiError::NotFound(format!("no grant {id:.64}")));
        }
        self.store.grant(id).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "no grant {id}: check the id with `breakglass status`"
            ))
        })
    }

    pub(crate) fn may_see(&self, who: &Principal, g: &AnyGrant) -> bool {
        let info = g.info();
        if info.user == who.name || self.is_admin(who) {
            return true;
        }
        let policy = self.policy();
        let in_any = |groups: &[String]| who.groups.iter().any(|x| groups.contains(x));
        match g {
            AnyGrant::Pending(p) if in_any(&p.state.from) => true,
            _ => {
                in_any(&info.review_by)
                    || policy
                        .set
                        .policy(&info.policy)
                        .is_some_and(|p| match &p.approval {
                            policy::Approval::Quorum { from, .. } => in_any(from),
                            _ => false,
                        })
            }
        }
    }

    pub fn is_admin(&self, who: &Principal) -> bool {
        self.policy().set.is_admin(&who.name, &who.groups)
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
        let generated = u64::try_from(now.unix_secs()).unwrap_or(0);
        Ok(breakglass_connectors::krl::encode(
            &self.keys.ssh_ca.public_blob(),
            &serials,
            u64::try_from(now.0).unwrap_or(0),
            generated,
            &format!("breakglass {} revoked certificates", self.keys.origin),
        ))
    }

    pub async fn grant(&self, who: &Principal, id: &str) -> Result<GrantView, ApiError> {
        let g = self.load(id).await?;
        if !self.may_see(who, &g) {
            return Err(ApiError::NotFound(format!("no grant {id}")));
        }
        let mut v = GrantView::of(&g, self.now());
        v.review = self.review_of(id).await?;
        v.credential_status = self.store.credential(id).await?.map(|c| {
            let mut v = json!({"kind": c.kind, "fingerprint": c.fingerprint, "state": c.state,
                   "revocation_pending": c.state == "revoking", "attempts": c.attempts,
                   "last_error": c.last_error, "revoked_at": c.revoked_at.map(time::rfc3339)});
            // Public identifiers only (never a password or the hook's output).
            for k in ["serial", "principals", "host", "port", "role"] {
                if let Some(x) = c.handle.get(k) {
                    v[k] = x.clone();
                }
            }
            v
        });
        Ok(v)
    }

    pub async fn grants(
        &self,
        who: &Principal,
        all: bool,
        states: Vec<String>,
    ) -> Result<Vec<GrantView>, ApiError> {
        let now = self.now();
        let filter = GrantFilter {
            user: if all { None } else { Some(who.name.clone()) },
            states,
            limit: 200,
        };
        let list = self.store.grants(&filter).await?;
        Ok(list
            .iter()
            .filter(|g| self.may_see(who, g))
            .map(|g| GrantView::of(g, now))
            .collect())
    }

    pub async fn approve(
        &self,
        who: &Principal,
        id: &str,
        otp: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        let p = self.pending_for(who, id).await?;
        // Approvers always pass MFA.
        let (changes, events, _mfa) = self.verify_mfa(who, otp, "approve").await?;
        let mut p = p;
        let mut attempt = 0;
        loop {
            match self.apply_approval(who, p, &changes, &events).await {
                // Another approval (or the time-out) changed the grant since we read it: read it
                // again and apply this approval on top, so approvals never overwrite each other.
                Err(ApiError::Conflict(_)) if attempt < CAS_RETRIES => {
                    attempt += 1;
                    p = self
                        .pending_for(who, id)
                        .await
                        .or_else_spend_mfa(self, &changes, &events)
                        .await?;
                }
                other => return other,
            }
        }
    }

    /// The pending grant `who` may approve (a refusal is audited).
    async fn pending_for(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<grant::Grant<grant::Pending>, ApiError> {
        let g = self.load(id).await?;
        let AnyGrant::Pending(p) = g else {
            return Err(ApiError::Conflict(format!(
                "grant {id} is {}, not pending: only pending grants can be approved",
                g.state_name()
            )));
        };
        if let Err(e) = p.check_approver(&who.name, &who.groups) {
            self.refuse(
                who,
                &p.info.resource,
                Some(id),
                "approval-refused",
                &e.to_string(),
                json!({}),
            )
            .await?;
            return Err(ApiError::Forbidden(e.to_string()));
        }
        Ok(p)
    }

    /// Adds one approval (activating the grant at quorum) and commits it with the MFA evidence.
    async fn apply_approval(
        &self,
        who: &Principal,
        p: grant::Grant<grant::Pending>,
        mfa_changes: &[Change],
        mfa_events: &[NewEvent],
    ) -> Result<GrantView, ApiError> {
        let mut changes = mfa_changes.to_vec();
        let mut events = mfa_events.to_vec();
        let now = self.now();
        let info = p.info.clone();
        let next: AnyGrant = match p
            .approve(&who.name, &who.groups, now)
            .map_err(|e| ApiError::Forbidden(e.to_string()))
            .or_else_spend_mfa(self, &changes, &events)
            .await?
        {
            Approved::StillPending(p) => p.into(),
            Approved::Activated(a) => a.into(),
        };
        events.push(event(
            now,
            "grant.approved",
            Some(&who.name),
            Some(&info),
            json!({}),
        ));
        let mut issued = None;
        if let AnyGrant::Active(a) = &next {
            events.push(activation_event(now, &a.info, &a.state));
            // The credential is issued, never shown to the approver: sealed for the holder's
            // one-time pickup (`breakglass credential GRANT_ID`).
            if let Some((change, ev, out)) = self
                .issue_credential(&a.info, a.state.expires_at, true)
                .await
                .or_else_spend_mfa(self, &changes, &events)
                .await?
            {
                changes.push(change);
                events.push(ev);
                issued = Some(out);
            }
        }
        changes.push(Change::UpdateGrant {
            expected_state: "pending",
            grant: next.clone(),
        });
        if let Err(e) = self.commit(changes, events).await {
            if let Some((connector, handle, _)) = issued {
                // Not recorded: take the credential back now (the sweep is the net).
                if let Err(re) = connector.revoke(&handle).await {
                    tracing::error!(grant = %next.id(), error = %re, "could not revoke a credential whose approval failed to record");
                }
            }
            return Err(e);
        }
        if matches!(next, AnyGrant::Active(_)) {
            self.metrics.activations.inc();
        }
        self.wake.notify_one();
        Ok(GrantView::of(&next, now))
    }

    pub async fn deny(
        &self,
        who: &Principal,
        id: &str,
        reason: &str,
    ) -> Result<GrantView, ApiError> {
        check_text("reason", reason, 2000)?;
        if reason.trim().is_empty() {
            return Err(ApiError::bad_hint(
                "a denial needs a reason",
                "pass --reason TEXT",
            ));
        }
        let g = self.load(id).await?;
        let AnyGrant::Pending(p) = g else {
            return Err(ApiError::Conflict(format!(
                "grant {id} is {}, not pending: only pending grants can be denied",
                g.state_name()
            )));
        };
        let now = self.now();
        let info = p.info.clone();
        let ended = match p.deny(&who.name, &who.groups, reason.trim().to_string(), now) {
            Ok(e) => e,
            Err(e) => {
                self.refuse(
                    who,
                    &info.resource,
                    Some(id),
                    "denial-refused",
                    &e.to_string(),
                    json!({}),
                )
                .await?;
                return Err(ApiError::Forbidden(e.to_string()));
            }
        };
        let next = AnyGrant::from(ended);
        self.commit(
            vec![Change::UpdateGrant {
                expected_state: "pending",
                grant: next.clone(),
            }],
            vec![event(
                now,
                "grant.denied",
                Some(&who.name),
                Some(&info),
                json!({"reason": reason.trim()}),
            )],
        )
        .await?;
        Ok(GrantView::of(&next, now))
    }

    /// Who may end a grant early: its requester, the policy's approvers and reviewers, admins.
    fn may_revoke(&self, who: &Principal, g: &AnyGrant) -> bool {
        self.may_see(who, g)
    }

    pub async fn revoke(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        if let Some(r) = reason {
            check_text("reason", r, 2000)?;
        }
        let g = self.load(id).await?;
        if !self.may_revoke(who, &g) {
            return Err(ApiError::NotFound(format!("no grant {id}")));
        }
        let now = self.now();
        let info = g.info().clone();
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let (expected, next, kind) = match g {
            AnyGrant::Active(a) => (
                "active",
                AnyGrant::from(a.revoke(&who.name, reason.clone(), now)),
                "grant.revoked",
            ),
            AnyGrant::Pending(p) => (
                "pending",
                AnyGrant::from(p.cancel(&who.name, now)),
                "grant.cancelled",
            ),
            AnyGrant::Ended(_) => {
                return Err(ApiError::Conflict(format!(
                    "grant {id} has already ended ({}); nothing to revoke",
                    g.state_name()
                )));
            }
        };
        self.commit(
            vec![Change::UpdateGrant {
                expected_state: expected,
                grant: next.clone(),
            }],
            vec![event(
                now,
                kind,
                Some(&who.name),
                Some(&info),
                json!({"reason": reason}),
            )],
        )
        .await?;
        self.metrics.revocations.inc();
        self.wake.notify_one();
        Ok(GrantView::of(&next, now))
    }

    pub async fn extend(
        &self,
        who: &Principal,
        id: &str,
        by: &str,
        otp: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        let by = duration::parse(by).map_err(|e| ApiError::bad(e.to_string()))?;
        let g = self.load(id).await?;
        if g.info().user != who.name {
            if self.may_see(who, &g) {
                return Err(ApiError::Forbidden(format!(
                    "only {} who requested grant {id} can extend it",
                    g.info().user
                )));
            }
            return Err(ApiError::NotFound(format!("no grant {id}")));
        }
        let AnyGrant::Active(a) = g else {
            return Err(ApiError::Conflict(format!(
                "grant {id} is {}, not active: only active grants can be extended",
                g.state_name()
            )));
        };
        let now = self.now();
        let policy = self.policy();
        let new_expiry = match policy.set.check_extension(
            &a.info.policy,
            &who.name,
            &who.groups,
            &a.info.resource,
            a.state.activated_at,
            a.state.expires_at,
            by,
            now,
        ) {
            Ok(t) => t,
            Err(refusal) => {
                self.refuse(
                    who,
                    &a.info.resource,
                    Some(id),
                    refusal.code.as_str(),
                    &refusal.message,
                    json!({"by": duration::format(by)}),
                )
                .await?;
                return Err(ApiError::Refused(refusal));
            }
        };
        let mfa_required = policy
            .set
            .policy(&a.info.policy)
            .map(|p| p.require.mfa)
            .unwrap_or(true);
        let (mut changes, mut events, _mfa) = if mfa_required {
            self.verify_mfa(who, otp, "extend").await?
        } else {
            (vec![], vec![], MfaLock::none())
        };
        let info = a.info.clone();
        let old = a.state.expires_at;
        let mut next = a
            .extend(&who.name, new_expiry, now)
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        let count = u32::try_from(next.state.extensions.len()).unwrap_or(u32::MAX);
        if let Some(flag) = breakglass_core::anomaly::on_extension(&policy.set.anomalies, count) {
            self.metrics.anomalies.inc();
            next.info.flags.push(flag.clone());
            events.push(event(
                now,
                "anomaly.flagged",
                Some("system"),
                Some(&info),
                json!({"flags": [flag]}),
            ));
        }
        events.push(event(
            now,
            "grant.extended",
            Some(&who.name),
            Some(&info),
            json!({"by_secs": by.as_secs(), "old_expires_at": time::rfc3339(old), "new_expires_at": time::rfc3339(new_expiry)}),
        ));
        let next = AnyGrant::from(next);
        changes.push(Change::UpdateGrant {
            expected_state: "active",
            grant: next.clone(),
        });
        self.commit(changes, events).await?;
        self.wake.notify_one();
        Ok(GrantView::of(&next, now))
    }

    /// Applies every time-driven transition that is due: expiries and approval time-outs.
    /// Returns how many grants changed. Safe to run on several nodes at once.
    pub async fn run_due(&self) -> Result<usize, ApiError> {
        let mut done = 0;
        loop {
            let now = self.now();
            let due = self.store.due_grants(now, 256).await?;
            if due.is_empty() {
                return Ok(done);
            }
            let batch = due.len();
            for g in due {
                let id = g.id().to_string();
                let result = match g {
                    AnyGrant::Active(a) => {
                        let deadline = a.state.expires_at;
                        let info = a.info.clone();
                        match a.expire(now) {
                            Ok(e) => {
                                let lag = now.0.saturating_sub(deadline.0);
                                self.metrics.observe_expiry_lag(lag);
                                self.commit(
                                    vec![Change::UpdateGrant {
                                        expected_state: "active",
                                        grant: e.into(),
                                    }],
                                    vec![event(
                                        now,
                                        "grant.expired",
                                        Some("system"),
                                        Some(&info),
                                        json!({"deadline": time::rfc3339(deadline), "lag_ms": lag}),
                                    )],
                                )
                                .await
                                .map(|_| self.metrics.expiries.inc())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                    AnyGrant::Pending(p) => {
                        let info = p.info.clone();
                        match p.time_out(now) {
                            Ok(TimedOut::Ended(e)) => {
                                self.commit(
                                    vec![Change::UpdateGrant {
                                        expected_state: "pending",
                                        grant: e.into(),
                                    }],
                                    vec![event(
                                        now,
                                        "grant.timed_out",
                                        Some("system"),
                                        Some(&info),
                                        json!({"on_timeout": "deny"}),
                                    )],
                                )
                                .await
                            }
                            Ok(TimedOut::Activated(a)) => {
                                let mut events = vec![
                                    event(
                                        now,
                                        "grant.timed_out",
                                        Some("system"),
                                        Some(&info),
                                        json!({"on_timeout": "auto", "review_required": true}),
                                    ),
                                    activation_event(now, &a.info, &a.state),
                                ];
                                let mut changes = Vec::new();
                                match self
                                    .issue_credential(&a.info, a.state.expires_at, true)
                                    .await
                                {
                                    Ok(Some((change, ev, _))) => {
                                        changes.push(change);
                                        events.push(ev);
                                    }
                                    Ok(None) => {}
                                    // The target refused: the fallback cannot give access; deny instead.
                                    Err(_) => continue,
                                }
                                changes.push(Change::UpdateGrant {
                                    expected_state: "pending",
                                    grant: a.into(),
                                });
                                self.commit(changes, events)
                                    .await
                                    .map(|_| self.metrics.activations.inc())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                    AnyGrant::Ended(_) => Ok(()),
                };
                match result {
                    Ok(()) => done += 1,
                    // Another node or request got there first: fine.
                    Err(ApiError::Conflict(_)) => {}
                    Err(e) => {
                        tracing::error!(grant = %id, error = %e, "time-driven transition failed; will retry");
                        return Err(e);
                    }
                }
            }
            if batch < 256 {
                return Ok(done);
            }
        }
    }

    /// Alerts for admins: the outbox, newest first.
    /// Disables a user: no new login, their sessions end, and every grant they hold ends now,
    /// in one transaction — active grants are revoked (their target credentials queued for
    /// revocation, reviews opened, alerts queued by [`Engine::commit`]), pending ones cancelled.
    /// Returns the ids of the grants it ended.
    pub async fn disable_user(&self, name: &str, actor: &str) -> Result<Vec<String>, ApiError> {
        let mut attempt = 0;
        loop {
            if self.store.user(name).await?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "no user {name}: see `breakglass admin user list`"
                )));
            }
            let open = self
                .store
                .grants(&GrantFilter {
                    user: Some(name.to_string()),
                    states: vec!["pending".into(), "active".into()],
                    limit: 10_000,
                })
                .await?;
            let now = self.now();
            let mut changes = vec![
                Change::SetUserDisabled {
                    name: name.to_string(),
                    disabled: true,
                },
                Change::DeleteUserSessions {
                    user: name.to_string(),
                },
            ];
            let mut events = Vec::new();
            let mut ended = Vec::new();
            for g in open {
                let info = g.info().clone();
                let (expected, next, kind) = match g {
                    AnyGrant::Active(a) => (
                        "active",
                        AnyGrant::from(a.revoke(actor, Some("user disabled".into()), now)),
                        "grant.revoked",
                    ),
                    AnyGrant::Pending(p) => (
                        "pending",
                        AnyGrant::from(p.cancel(actor, now)),
                        "grant.cancelled",
                    ),
                    AnyGrant::Ended(_) => continue,
                };
                changes.push(Change::UpdateGrant {
                    expected_state: expected,
                    grant: next,
                });
                events.push(event(
                    now,
                    kind,
                    Some(actor),
                    Some(&info),
                    json!({"reason": "user disabled"}),
                ));
                ended.push(info.id);
            }
            events.insert(
                0,
                NewEvent {
                    ts_ms: now.0,
                    kind: "admin.user_disabled".into(),
                    actor: Some(actor.to_string()),
                    grant_id: None,
                    resource: None,
                    data: json!({"user": name, "details": {"ended_grants": ended}}),
                },
            );
            match self.commit(changes, events).await {
                // A grant of the user changed while we read them (an extension, an expiry).
                Err(ApiError::Conflict(_)) if attempt < CAS_RETRIES => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => {
                    self.metrics.revocations.add(ended.len() as u64);
                    self.wake.notify_one();
                    return Ok(ended);
                }
            }
        }
    }

    pub async fn alerts(
        &self,
        who: &Principal,
        state: Option<&str>,
    ) -> Result<Vec<breakglass_store::AlertRow>, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "the alert outbox is for admins (policy `admins`)".into(),
            ));
        }
        if let Some(s) = state
            && !["pending", "delivered", "failed"].contains(&s)
        {
            return Err(ApiError::bad_hint(
                format!("unknown alert state {s:?}"),
                "use pending, delivered or failed",
            ));
        }
        Ok(self.store.alerts(state, 500).await?)
    }

    /// Puts a dead-lettered alert back in the queue.
    pub async fn retry_alert(&self, who: &Principal, id: i64) -> Result<(), ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "retrying alerts is for admins (policy `admins`)".into(),
            ));
        }
        let now = self.now();
        self.commit(
            vec![Change::RetryAlert { id, now }],
            vec![event(
                now,
                "alert.retried",
                Some(&who.name),
                None,
                json!({"alert_id": id}),
            )],
        )
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound(format!(
                "no dead-lettered alert {id}: see `breakglass alerts --state failed`"
            )),
            e => e,
        })?;
        self.alert_wake.notify_one();
        Ok(())
    }

    pub async fn user_exists(&self, name: &str) -> Result<Option<User>, ApiError> {
        Ok(self.store.user(name).await?)
    }
}

fn totp_aad(user: &str) -> String {
    format!("totp:{user}")
}

fn activation_event(now: Timestamp, info: &GrantInfo, a: &grant::Active) -> NewEvent {
    event(
        now,
        "grant.activated",
        Some("system"),
        Some(info),
        json!({
            "via": a.via, "activated_at": time::rfc3339(a.activated_at),
            "expires_at": time::rfc3339(a.expires_at),
            "approvals": a.approvals.iter().map(|x| x.by.clone()).collect::<Vec<_>>(),
        }),
    )
}

/// On a failed action after a successful MFA check, the code is still spent: commit the MFA
/// state and its audit event, then return the error.
trait SpendMfaOnError<T> {
    async fn or_else_spend_mfa(
        self,
        engine: &Engine,
        changes: &[Change],
        events: &[NewEvent],
    ) -> Result<T, ApiError>;
}

impl<T> SpendMfaOnError<T> for Result<T, ApiError> {
    async fn or_else_spend_mfa(
        self,
        engine: &Engine,
        changes: &[Change],
        events: &[NewEvent],
    ) -> Result<T, ApiError> {
        if self.is_err() {
            let mfa_changes: Vec<Change> = changes
                .iter()
                .filter(|c| matches!(c, Change::PutMfaState { .. }))
                .cloned()
                .collect();
            let mfa_events: Vec<NewEvent> = events
                .iter()
                .filter(|e| e.kind.starts_with("mfa."))
                .cloned()
                .collect();
            if !mfa_changes.is_empty() {
                engine.commit(mfa_changes, mfa_events).await?;
            }
        }
        self
    }
}
