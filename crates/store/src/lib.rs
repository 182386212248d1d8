//! Durable storage for breakglass, in the domain's terms.
//!
//! One write method, [`Store::commit`], applies a batch of [`Change`]s together with the audit
//! events that record them, in ONE transaction: either the changes and their audit records are
//! durable together, or nothing happened (fail closed). Grants are updated with optimistic
//! concurrency (`expected_state`), so several servers sharing one database never apply the same
//! transition twice. Reads are plain queries.
//!
//! Backends: [`sqlite::SqliteStore`] (embedded, default). A PostgreSQL backend implements the
//! same trait and must pass the same test suite.
#![forbid(unsafe_code)]

pub mod sqlite;

use async_trait::async_trait;
use breakglass_core::audit::{AuditRecord, Head, IndexColumns, NewEvent};
use breakglass_core::grant::AnyGrant;
use breakglass_core::mfa::MfaState;
use breakglass_core::time::Timestamp;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A grant changed under us (another request or node got there first). Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The transaction could not be made durable: nothing it carried was applied.
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// A login session (only the hash of the token is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A user's MFA enrolment and guessing state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MfaRecord {
    /// The TOTP secret, sealed (encrypted) by the caller's key; never stored in clear.
    pub totp_sealed: Option<Vec<u8>>,
    pub totp_confirmed: bool,
    pub state: MfaState,
}

/// One change in a unit of work.
#[derive(Debug, Clone)]
pub enum Change {
    AddUser(User),
    SetUserDisabled {
        name: String,
        disabled: bool,
    },
    CreateSession {
        token_hash: [u8; 32],
        session: Session,
    },
    DeleteSession {
        token_hash: [u8; 32],
    },
    DeleteUserSessions {
        user: String,
    },
    /// Sets (or clears) the TOTP enrolment and resets guessing state.
    PutTotp {
        user: String,
        sealed: Option<Vec<u8>>,
        confirmed: bool,
    },
    PutMfaState {
        user: String,
        state: MfaState,
    },
    InsertGrant(AnyGrant),
    /// Replaces a grant, but only if its stored state is still `expected_state`.
    UpdateGrant {
        expected_state: &'static str,
        grant: AnyGrant,
    },
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    /// Queues an alert (written with the audit event it reports).
    EnqueueAlert(NewAlert),
    /// Claims a due alert for delivery until `until`, if nobody else has.
    LeaseAlert {
        id: i64,
        expected_next: Timestamp,
        until: Timestamp,
    },
    /// Records a delivery attempt's outcome.
    AlertAttempt {
        id: i64,
        state: &'static str,
        attempts: u32,
        next_attempt_at: Timestamp,
        last_error: Option<String>,
        at: Timestamp,
    },
    /// Puts a dead-lettered alert back in the queue.
    RetryAlert {
        id: i64,
        now: Timestamp,
    },
    /// Opens the post-incident review of a grant that ended.
    OpenReview(Review),
    /// Records a verdict (immutable; a correction is a new entry).
    AddReviewEntry(ReviewEntry),
    /// Marks an overdue review as escalated (alerted), once.
    EscalateReview {
        grant_id: String,
        at: Timestamp,
    },
    /// Stores a new version of a sealed secret and clears its must-rotate flag.
    PutSecret {
        resource: String,
        sealed: Vec<u8>,
        version: i64,
        by: String,
        at: Timestamp,
    },
    /// Flags a secret that was exposed under a grant that has ended.
    FlagSecretRotation {
        resource: String,
    },
    /// Records a credential issued at the target for a grant.
    RecordCredential(CredentialRecord),
    /// The holder picked up the sealed credential: clear it (a conflict if already taken).
    TakeCredentialPickup {
        grant_id: String,
    },
    /// The grant ended: revoke its credential (no-op when it has none).
    StartRevocation {
        grant_id: String,
        at: Timestamp,
    },
    /// Outcome of one revocation attempt.
    RevocationAttempt {
        grant_id: String,
        done: bool,
        attempts: u32,
        next_attempt_at: Timestamp,
        last_error: Option<String>,
        at: Timestamp,
    },
}

/// A credential issued at a target (fingerprints and handles only, never the secret).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRecord {
    pub grant_id: String,
    pub resource: String,
    pub kind: String,
    pub fingerprint: String,
    pub handle: serde_json::Value,
    pub issued_at: Timestamp,
    /// `issued`, `revoking` (revocation pending) or `revoked`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub revoked_at: Option<Timestamp>,
    /// The credential sealed under the KEK, waiting for its holder (approver-activated grants).
    pub pickup: Option<Vec<u8>>,
}

/// A sealed secret's metadata and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub resource: String,
    pub sealed: Vec<u8>,
    pub version: i64,
    pub must_rotate: bool,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// A post-incident review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub grant_id: String,
    pub requester: String,
    pub opened_at: Timestamp,
    pub due_at: Timestamp,
    /// Groups whose members may review.
    pub by: Vec<String>,
    /// `open` or `done`.
    pub state: String,
    pub escalated_at: Option<Timestamp>,
}

/// One reviewer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewEntry {
    pub grant_id: String,
    pub reviewer: String,
    /// `appropriate` or `inappropriate`.
    pub verdict: String,
    pub notes: String,
    pub at: Timestamp,
}

/// An alert to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub created_at: Timestamp,
    pub sink: String,
    pub kind: String,
    /// Stable per alert: receivers use it to drop duplicates of an at-least-once delivery.
    pub dedup_key: String,
    pub doc: serde_json::Value,
}

/// A queued, delivered or dead-lettered alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub created_at: Timestamp,
    pub sink: String,
    pub kind: String,
    pub dedup_key: String,
    pub doc: serde_json::Value,
    /// `pending`, `delivered` or `failed` (dead-lettered).
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// Which grants to list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub user: Option<String>,
    /// Only grants in these states (`pending`, `active`, …); all when empty.
    pub states: Vec<String>,
    pub limit: u32,
}

/// A stored checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
    pub created_at: Timestamp,
}

/// Where [`Store::grant_stats`] stops counting (anomaly thresholds are far below it).
pub const GRANT_STATS_CAP: u64 = 1000;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `changes` and appends `events` to the audit chain atomically. Returns the new
    /// audit head. If anything fails (including the audit write), nothing is applied.
    async fn commit(&self, changes: Vec<Change>, events: Vec<NewEvent>) -> Result<Option<Head>>;

    async fn user(&self, name: &str) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>>;
    async fn mfa(&self, user: &str) -> Result<MfaRecord>;

    async fn grant(&self, id: &str) -> Result<Option<AnyGrant>>;
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<AnyGrant>>;
    /// For anomaly flags: the user's grants since `user_since`, the resource's grants since
    /// `resource_since`, and whether the user ever had a grant on the resource. Counts stop at
    /// [`GRANT_STATS_CAP`] so the cost of a request stays bounded however busy the window.
    async fn grant_stats(
        &self,
        user: &str,
        resource: &str,
        user_since: Timestamp,
        resource_since: Timestamp,
    ) -> Result<(u64, u64, bool)>;
    /// Grants requested at or after `since`, oldest first.
    async fn grants_since(&self, since: Timestamp, limit: u32) -> Result<Vec<AnyGrant>>;
    /// Audit events at or after `since`, counted by kind.
    async fn audit_kind_counts(&self, since: Timestamp) -> Result<Vec<(String, u64)>>;
    /// How many grants are in `state`.
    async fn count_grants(&self, state: &str) -> Result<u64>;
    /// Pending or active grants whose deadline is at or before `now`.
    async fn due_grants(&self, now: Timestamp, limit: u32) -> Result<Vec<AnyGrant>>;
    /// The earliest deadline of any pending or active grant.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;

    async fn audit_head(&self) -> Result<Option<Head>>;
    /// Records with `seq >= from`, in order, at most `limit`.
    async fn audit_records(&self, from: u64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// [`Store::audit_records`] with the columns the store keeps beside each body for its
    /// indexes (for verification: they are outside the hash).
    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<(AuditRecord, IndexColumns)>>;
    /// Records about one grant, in order.
    async fn audit_for_grant(&self, grant_id: &str) -> Result<Vec<AuditRecord>>;
    async fn add_checkpoint(&self, cp: StoredCheckpoint) -> Result<()>;
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>>;

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Pending alerts whose next attempt is due.
    async fn due_alerts(&self, now: Timestamp, limit: u32) -> Result<Vec<AlertRow>>;
    /// Alerts, newest first, optionally in one state.
    async fn alerts(&self, state: Option<&str>, limit: u32) -> Result<Vec<AlertRow>>;
    /// When the next pending alert is due.
    async fn next_alert_at(&self) -> Result<Option<Timestamp>>;

    async fn review(&self, grant_id: &str) -> Result<Option<Review>>;
    /// Reviews, newest first; only open ones when `open_only`.
    async fn reviews(&self, open_only: bool, limit: u32) -> Result<Vec<Review>>;
    async fn review_entries(&self, grant_id: &str) -> Result<Vec<ReviewEntry>>;
    /// Open reviews past their due date that were not escalated yet.
    async fn overdue_reviews(&self, now: Timestamp) -> Result<Vec<Review>>;
    async fn credential(&self, grant_id: &str) -> Result<Option<CredentialRecord>>;
    /// Credentials whose revocation attempt is due.
    async fn due_revocations(&self, now: Timestamp, limit: u32) -> Result<Vec<CredentialRecord>>;
    /// Credentials at a resource not yet confirmed revoked (issued, or revocation pending).
    async fn open_credentials(&self, resource: &str) -> Result<Vec<CredentialRecord>>;
    /// Credentials of a kind whose revocation started (pending or confirmed).
    async fn revoked_credentials(&self, kind: &str) -> Result<Vec<CredentialRecord>>;
    async fn secret(&self, resource: &str) -> Result<Option<SecretRecord>>;
    async fn secrets(&self) -> Result<Vec<SecretRecord>>;
}
