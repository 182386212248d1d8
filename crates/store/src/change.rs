//! The changes a unit of work applies (see [`crate::Store::commit`]).

use crate::alerts::NewAlert;
use crate::credentials::CredentialRecord;
use crate::drills::{DrillRecord, DrillWindow};
use crate::glass_cases::{GlassCase, GlassRole, GlassSerial};
use crate::passkeys::{Ceremony, PasskeyRecord};
use crate::recordings::{Chunk, RecordingSession};
use crate::reviews::{Review, ReviewEntry};
use crate::users::{Session, User};
use breakglass_core::grant::{AnyGrant, Ended, Grant};
use breakglass_core::mfa::MfaState;
use breakglass_core::time::Timestamp;

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
    /// Writes the guessing state computed from the record at `expected_version`; refused with
    /// [`StoreError::MfaConflict`] if anything wrote it since (single use, exact failure count).
    PutMfaState {
        user: String,
        expected_version: i64,
        state: MfaState,
    },
    /// Counts one failed login on each of `keys` (the login throttle's counters, shared by every
    /// node): a counter last touched before `forget_before` starts again from one; counters
    /// idle since then are dropped (the table stays bounded by the throttle's window).
    CountLoginFailure {
        keys: Vec<String>,
        at: Timestamp,
        forget_before: Timestamp,
    },
    /// Stores a signed checkpoint (one of a size at most: a second of the same size is ignored).
    AddCheckpoint(crate::audit::StoredCheckpoint),
    /// Takes lease `name` for `holder` until `until` if it ended before `now` (a new term), or
    /// renews it if `holder` has it; a conflict if another node holds it.
    ClaimLease {
        name: String,
        holder: String,
        now: Timestamp,
        until: Timestamp,
    },
    /// Fences the unit on `holder` still holding lease `name` in `term` at `now` (a conflict
    /// otherwise): a singleton's writes carry it.
    HoldsLease {
        name: String,
        holder: String,
        term: i64,
        now: Timestamp,
    },
    /// Takes lease `name` from `previous` (known dead: a process of this host that is gone),
    /// in a new term; a conflict if `previous` no longer holds it.
    TakeLease {
        name: String,
        holder: String,
        previous: String,
        until: Timestamp,
    },
    /// Ends `holder`'s lease now (a clean shutdown hands over at once).
    ReleaseLease {
        name: String,
        holder: String,
    },
    /// Clears login throttle counters (a successful login clears its account-and-source pair).
    ClearLoginFailures {
        keys: Vec<String>,
    },
    /// Registers a passkey (a conflict if its credential id is registered already).
    AddPasskey(PasskeyRecord),
    /// Saves a passkey after a login (its counter) and when it was used.
    UpdatePasskey {
        id: String,
        passkey_json: String,
        last_used_at: Timestamp,
    },
    /// Removes one of `user`'s passkeys (not found if it is not theirs).
    RemovePasskey {
        user: String,
        id: String,
    },
    /// Stores a ceremony in flight (dropping expired ones, and the user's oldest beyond
    /// [`crate::passkeys::CEREMONIES_PER_USER`]).
    StartCeremony(Ceremony),
    /// Finishes a ceremony: deletes it, a conflict if it is gone (single use).
    TakeCeremony {
        id: String,
    },
    /// A new set of recovery codes (hashes) replaces the old set.
    ReplaceRecoveryCodes {
        user: String,
        hashes: Vec<[u8; 32]>,
        at: Timestamp,
    },
    /// Spends one recovery code: a conflict if it is spent already.
    UseRecoveryCode {
        user: String,
        hash: [u8; 32],
        at: Timestamp,
    },
    InsertGrant(AnyGrant),
    /// Replaces a grant, but only if its stored state is still `expected_state` and nobody changed
    /// it since it was read (the store compares `grant.info().rev` and bumps it).
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
    /// Fences an alert's delivery record on the lease this node took (`until`): a conflict if
    /// the alert is no longer pending with that lease (another node took it over).
    AlertLeaseHeld {
        id: i64,
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
    /// Claims a due revocation (compare-and-set on its next attempt: only if still revoking
    /// and nobody moved it), leasing it until `until`; a conflict if another node has it.
    LeaseRevocation {
        grant_id: String,
        expected_next: Timestamp,
        until: Timestamp,
    },
    /// Fences a revocation's record on the lease this node took (`until`).
    RevocationLeaseHeld {
        grant_id: String,
        until: Timestamp,
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
    /// A recorder opened a session.
    StartRecording(RecordingSession),
    /// The session's next chunk (a conflict unless `seq` is the next number and it is open).
    AppendChunk(Chunk),
    /// The session reached its size cap.
    CapRecording {
        session_id: String,
    },
    /// The session ended (a conflict if it already had).
    EndRecording {
        session_id: String,
        at: Timestamp,
        reason: String,
        exit_status: Option<i32>,
    },
    /// Retention: deletes the session's chunk payloads (their digests stay).
    PurgeRecording {
        session_id: String,
    },
    /// Records a sealed glass case and every serial of its ladder.
    SealGlassCase {
        case: GlassCase,
        serials: Vec<GlassSerial>,
        roles: Vec<GlassRole>,
    },
    /// The case's journal was imported: its serials join the KRL (a conflict if done already).
    ReconcileGlassCase {
        id: String,
        at: Timestamp,
    },
    /// The "runs out soon" alert for the case was queued.
    WarnGlassCase {
        id: String,
        at: Timestamp,
    },
    /// Creates a stream's or witness's cursor at `position`, unless it exists.
    OpenCursor {
        name: String,
        position: u64,
        at: Timestamp,
    },
    /// A delivery up to `to` succeeded: moves the cursor there from `from` (a conflict if it
    /// is no longer at `from`); clears the failure count.
    AdvanceCursor {
        name: String,
        from: u64,
        to: u64,
        at: Timestamp,
    },
    /// A drill starts (a scheduled one claims its slot: a conflict if another process did).
    StartDrill(DrillRecord),
    /// A running drill's result (verdict, steps, timings).
    FinishDrill(DrillRecord),
    /// A people-drill window opens.
    OpenDrillWindow(DrillWindow),
    /// An open people-drill window ends early at `at` (a conflict if it is not open).
    CloseDrillWindow {
        id: String,
        by: String,
        at: Timestamp,
    },
    /// A delivery attempt failed (the cursor stays).
    CursorFailed {
        name: String,
        error: String,
        at: Timestamp,
    },
}

impl Change {
    /// The grant whose rows this change locks, when it locks one (the writer applies a batch's
    /// units in this order so two nodes' batches never wait on each other in a circle).
    pub fn grant_id(&self) -> Option<&str> {
        match self {
            Change::InsertGrant(g) | Change::UpdateGrant { grant: g, .. } => Some(g.id()),
            Change::RecordCredential(c) => Some(&c.grant_id),
            Change::TakeCredentialPickup { grant_id }
            | Change::StartRevocation { grant_id, .. }
            | Change::LeaseRevocation { grant_id, .. }
            | Change::RevocationLeaseHeld { grant_id, .. }
            | Change::RevocationAttempt { grant_id, .. } => Some(grant_id),
            _ => None,
        }
    }
    /// The ended grant, when this change ends a grant that had access (active → ended): what
    /// opens a review, queues a revocation and flags an exposed secret.
    pub fn ends_access(&self) -> Option<&Grant<Ended>> {
        match self {
            Change::UpdateGrant {
                expected_state: "active",
                grant: AnyGrant::Ended(e),
            } => Some(e),
            _ => None,
        }
    }
}
