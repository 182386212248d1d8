//! Offline glass cases and the serials of their certificate ladders.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A sealed case as the server remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlassCase {
    pub id: String,
    pub sealed_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub threshold: u32,
    pub custodians: Vec<String>,
    /// The audit head (seq, chain hash hex) it was sealed at.
    pub chain_head: Option<(u64, String)>,
    /// Ed25519 public key of its journal signing key.
    pub journal_key: Vec<u8>,
    /// `sealed` or `reconciled`.
    pub state: String,
    pub warned_at: Option<Timestamp>,
    pub reconciled_at: Option<Timestamp>,
}

/// One certificate of a case's ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlassSerial {
    pub case_id: String,
    pub serial: u64,
    pub resource: String,
    pub valid_after: Timestamp,
    pub valid_before: Timestamp,
}

/// One emergency PostgreSQL login of a case (one per resource per day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlassRole {
    pub case_id: String,
    pub resource: String,
    pub role: String,
    pub valid_after: Timestamp,
    pub valid_before: Timestamp,
}

#[async_trait]
pub trait GlassCases: Send + Sync {
    async fn glass_case(&self, id: &str) -> Result<Option<GlassCase>>;
    /// Newest first.
    async fn glass_cases(&self, limit: u32) -> Result<Vec<GlassCase>>;
    async fn glass_case_serials(&self, case_id: &str) -> Result<Vec<GlassSerial>>;
    /// Serials of reconciled cases still valid after `after`: what the KRL must list.
    async fn glass_case_revoked_serials(&self, after: Timestamp) -> Result<Vec<u64>>;
    async fn glass_case_roles(&self, case_id: &str) -> Result<Vec<GlassRole>>;
    /// The PostgreSQL logins of sealed cases whose day has not ended at `now`: the sweep must
    /// leave these alone (every other glass-case role is dropped).
    async fn glass_case_live_roles(&self, now: Timestamp) -> Result<Vec<GlassRole>>;
    /// Sealed cases running out before `before` that were not warned about yet.
    async fn glass_cases_expiring(&self, before: Timestamp) -> Result<Vec<GlassCase>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const INSERT: &str = "INSERT INTO glass_cases (id, sealed_by, created_at, expires_at, threshold, \
         custodians_json, chain_seq, chain_hash, journal_key, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'sealed')";
    pub const INSERT_SERIAL: &str = "INSERT INTO glass_case_serials (case_id, serial, resource, valid_after, valid_before) \
         VALUES ($1, $2, $3, $4, $5)";
    pub const INSERT_ROLE: &str = "INSERT INTO glass_case_roles (case_id, resource, role, valid_after, valid_before) \
         VALUES ($1, $2, $3, $4, $5)";
    pub const ROLES: &str =
        "SELECT * FROM glass_case_roles WHERE case_id = $1 ORDER BY valid_after, resource";
    pub const LIVE_ROLES: &str = "SELECT r.* FROM glass_case_roles r \
         JOIN glass_cases c ON c.id = r.case_id \
         WHERE c.state = 'sealed' AND r.valid_before > $1 ORDER BY r.role";
    /// Once: a conflict if the case was reconciled already.
    pub const RECONCILE: &str = "UPDATE glass_cases SET state = 'reconciled', reconciled_at = $1 \
         WHERE id = $2 AND state = 'sealed'";
    pub const WARN: &str =
        "UPDATE glass_cases SET warned_at = $1 WHERE id = $2 AND warned_at IS NULL";
    pub const BY_ID: &str = "SELECT * FROM glass_cases WHERE id = $1";
    pub const ALL: &str = "SELECT * FROM glass_cases ORDER BY created_at DESC LIMIT $1";
    pub const SERIALS: &str =
        "SELECT * FROM glass_case_serials WHERE case_id = $1 ORDER BY valid_after, resource";
    pub const REVOKED: &str = "SELECT s.serial FROM glass_case_serials s \
         JOIN glass_cases c ON c.id = s.case_id \
         WHERE c.state = 'reconciled' AND s.valid_before > $1 ORDER BY s.serial";
    pub const EXPIRING: &str = "SELECT * FROM glass_cases \
         WHERE state = 'sealed' AND warned_at IS NULL AND expires_at <= $1 ORDER BY expires_at LIMIT 100";
}
