//! The engine: every use case of breakglass, tying the pure core (policy, grant state machine,
//! MFA rules, audit encoding) to the store. Each use case loads what it needs, decides with the
//! core, and commits the change together with its audit events in one transaction. A refusal is
//! audited too. If the audit write fails, the action fails and nothing changes.

use crate::error::ApiError;
use crate::hash_pool::HashPool;
use crate::keys::Keys;
use crate::login_throttle::{LoginThrottle, ThrottleConfig};
use crate::metrics::Metrics;
use breakglass_core::audit::NewEvent;
use breakglass_core::mfa::MfaRules;
use breakglass_core::policy::PolicySet;
use breakglass_core::time::Timestamp;
use breakglass_store::{Change, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

mod alert_queue;
mod approval;
mod credentials;
mod drills;
mod expiry;
mod factors;
pub mod gateway;
mod glass_case;
mod identity;
mod lifecycle;
mod passkeys;
mod policy_reload;
mod recorder;
mod recording_views;
mod recovery;
mod request;
mod reviews;
mod secrets;
mod stream_views;
mod views;
mod visibility;

pub use crate::clock::{Clock, SystemClock};
pub use breakglass_core::audit::event;
pub use drills::{AuditCheck, DRILL_PASSWORD_MARK, PeopleDrillInput, drill_json};
pub use factors::{MfaAction, MfaLock, MfaPass, MfaProof};
pub use identity::{hash_password, token_hash, valid_name};
pub use passkeys::{CeremonyStart, PasskeyView};
pub use recorder::{Ack, HEARTBEAT_MS, RecorderHello, RecorderStart};
pub use recording_views::session_json;
pub use recovery::looks_like_recovery_code;
pub use secrets::MAX_SECRET;
pub use views::{ApprovalView, EnrollOutput, GrantView, LoginOutput, RequestInput};

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
    /// Where session recorders on SSH hosts reach this server (signed into certificates):
    /// `public_url`, else the address the server listens on.
    pub recorder_url: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mfa: MfaRules::default(),
            session_ttl: Duration::from_secs(12 * 3600),
            login_throttle: ThrottleConfig::default(),
            checkpoint_every_events: 1000,
            public_url: None,
            recorder_url: None,
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
    /// This process among the nodes on one store (host name, pid, random part): the holder
    /// named in leases.
    pub node_id: String,
    policy: RwLock<Arc<LoadedPolicy>>,
    /// Wakes the expiry timer when a new deadline may be earlier than the one it sleeps to.
    pub wake: Notify,
    /// Wakes the checkpointer.
    pub checkpoint_wake: Notify,
    /// Wakes the alert dispatcher when alerts are queued.
    pub alert_wake: Notify,
    /// Wakes the revoker when credentials are queued for revocation.
    pub revoke_wake: Notify,
    /// Wakes every audit stream after a commit with events (`notify_waiters`).
    pub stream_wake: Notify,
    /// Wakes the witness loops after a checkpoint is signed (`notify_waiters`).
    pub witness_wake: Notify,
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

/// A name for this process among the nodes: host, pid and 8 random hex digits (a restarted
/// node is a new holder: it never inherits a lease it held before it died).
fn node_id() -> String {
    use rand::RngCore;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(40)
        .collect();
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::rngs::OsRng.next_u32()
    )
}

/// How often a use case re-reads a state that another node changed under it before giving up.
const CAS_RETRIES: usize = 8;

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
            node_id: node_id(),
            policy: RwLock::new(Arc::new(policy)),
            wake: Notify::new(),
            checkpoint_wake: Notify::new(),
            alert_wake: Notify::new(),
            revoke_wake: Notify::new(),
            stream_wake: Notify::new(),
            witness_wake: Notify::new(),
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
            .filter_map(|c| {
                c.ends_access().map(|e| Change::StartRevocation {
                    grant_id: e.info.id.clone(),
                    at: e.state.ended_at,
                })
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
        if n > 0 {
            self.stream_wake.notify_waiters();
        }
        let before = self.metrics.audit_events.add(n);
        let every = self.config.checkpoint_every_events.max(1);
        if (before + n) / every != before / every {
            self.checkpoint_wake.notify_one();
        }
        Ok(())
    }

    /// Records events that go with no change (refusals, failed logins).
    pub(crate) async fn audit_only(&self, events: Vec<NewEvent>) -> Result<(), ApiError> {
        self.commit(vec![], events).await
    }
}
