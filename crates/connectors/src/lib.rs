//! Connectors: how a grant becomes a real credential at a target, and how that credential is
//! revoked there, verifiably.
//!
//! One trait in the domain's terms — [`Connector::issue`], [`Connector::revoke`],
//! [`Connector::verify_revoked`], [`Connector::sweep`] — and one module per kind of target:
//!
//! - [`ssh`]: OpenSSH user certificates signed by breakglass's CA, with a KRL ([`krl`]) for
//!   early revocation and a force-command that ends live sessions at expiry;
//! - [`postgres`]: a unique login role per grant, dropped (backends killed) when it ends, and a
//!   sweep that removes any role breakglass created that no grant owns;
//! - [`exec`]: the operator's own programs, for everything else.
//!
//! The server issues before it records the grant (no grant exists without its credential) and
//! revokes from a durable queue, retried with backoff until the target confirms. Credentials are
//! handed to the responder once and never stored, logged or audited: the store keeps a
//! fingerprint and a `handle` (what revocation needs, never a secret).

pub mod exec;
pub mod krl;
pub mod postgres;
pub mod probe;
pub mod ssh;

use async_trait::async_trait;
use breakglass_core::grant::GrantInfo;
use breakglass_core::policy::{Resource, ResourceKind};
use breakglass_core::time::Timestamp;
use serde_json::Value;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConnectorError {
    /// The resource's settings are wrong: the operator fixes the policy file.
    #[error("resource {resource}: {message}")]
    Config { resource: String, message: String },
    /// What the requester sent cannot be used (e.g. not an SSH public key).
    #[error("{0}")]
    Input(String),
    /// The target refused or could not be reached; retried where that makes sense.
    #[error("{0}")]
    Target(String),
}

pub type Result<T> = std::result::Result<T, ConnectorError>;

/// What the server knows when a credential is issued.
pub struct IssueRequest<'a> {
    pub grant: &'a GrantInfo,
    pub now: Timestamp,
    pub expires_at: Timestamp,
    /// The requester's OpenSSH public key (ssh resources).
    pub ssh_public_key: Option<&'a str>,
    /// Where and how the session recorder reports (ssh resources that record).
    pub recorder: Option<RecorderTicket<'a>>,
    /// The statement-recording gateway in front of the target (postgres resources with
    /// `gateway:`): the role gets `upstream_password` (the gateway's; the responder never sees
    /// it) and the URL handed out points at the gateway with `client_password`.
    pub gateway: Option<GatewayTicket<'a>>,
}

/// See [`IssueRequest::gateway`].
#[derive(Clone, Copy)]
pub struct GatewayTicket<'a> {
    pub host: &'a str,
    pub port: u16,
    pub upstream_password: &'a str,
    pub client_password: &'a str,
}

/// What a certificate tells `breakglass session` so it can stream the recording: the server's
/// URL and a token bound to the grant (the server checks it and the certificate's serial).
#[derive(Clone, Copy)]
pub struct RecorderTicket<'a> {
    pub url: &'a str,
    pub token: &'a str,
}

/// What issuing produced.
pub struct Issued {
    /// Handed to the responder once, never stored or logged.
    pub credential: Option<Value>,
    /// A fingerprint for the audit trail (never the secret).
    pub fingerprint: String,
    /// What the connector needs later to revoke (stored; never a secret).
    pub handle: Value,
}

/// Something a grant created at the target that outlives it (a table its PostgreSQL role made…),
/// reported with the revocation so the audit trail and the incident report name it. Names are
/// chosen by the grant holder: render them escaped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeftObject {
    /// Where it is (the database, for postgres).
    pub location: String,
    /// Schema-qualified identity as the target prints it, e.g. `public.f(integer)`.
    pub name: String,
    /// `table`, `view`, `materialized view`, `sequence`, `index`, `function`, `procedure`,
    /// `aggregate`, `schema`, `type`, `trigger`, …
    pub kind: String,
    /// It ran with its owner's rights when called (PostgreSQL `SECURITY DEFINER`).
    pub security_definer: bool,
    /// Code the grant left behind that breakglass disarmed (made `SECURITY INVOKER` and not
    /// executable by PUBLIC, or dropped).
    pub neutralised: bool,
    /// What was done with it, e.g. `owned by breakglass_orphans`.
    pub action: String,
}

/// What revoking found at the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// What the grant created that is kept after it (empty for most connectors).
    pub left_behind: Vec<LeftObject>,
}

/// Something the sweep found at a target that no grant owns, and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub name: String,
    pub note: String,
}

#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Creates the credential at the target, valid until `req.expires_at`.
    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued>;
    /// Revokes it at the target; Ok only once the target confirms, with what the grant left
    /// behind there.
    async fn revoke(&self, handle: &Value) -> Result<Revoked>;
    /// Checks at the target that the credential no longer works.
    async fn verify_revoked(&self, _handle: &Value) -> Result<bool> {
        Ok(true)
    }
    /// Removes credentials this connector created at the target that no open grant owns
    /// (`owned` holds the handles of credentials still issued or being revoked).
    async fn sweep(&self, _owned: &[Value], _now: Timestamp) -> Result<Vec<Swept>> {
        Ok(Vec::new())
    }
}

/// Keys and settings the server lends its connectors.
#[derive(Clone, Default)]
pub struct Context {
    /// The SSH certificate authority (Ed25519 seed, unsealed at start-up).
    pub ssh_ca: Option<Arc<ssh::Ca>>,
    /// The unsealed admin URL of a postgres resource with `admin_url_sealed: true`, if stored.
    pub sealed_admin_url: Option<zeroize::Zeroizing<String>>,
    /// The key that fingerprints credentials for the audit trail (HMAC-SHA256), derived by the
    /// server from its KEK, so a fingerprint cannot be checked against guesses offline.
    pub fingerprint_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

/// The connector for a resource, if its kind has one.
pub fn for_resource(r: &Resource, ctx: &Context) -> Result<Option<Box<dyn Connector>>> {
    Ok(match r.kind {
        ResourceKind::Exec => Some(Box::new(exec::Exec::from_settings(
            &r.name,
            &r.settings,
            ctx.fingerprint_key.clone(),
        )?)),
        ResourceKind::Ssh => {
            let ca = ctx.ssh_ca.clone().ok_or_else(|| ConnectorError::Config {
                resource: r.name.clone(),
                message: "no SSH CA key is loaded (run `breakglass init` on the data directory)"
                    .into(),
            })?;
            Some(Box::new(ssh::SshCert::from_settings(
                &r.name,
                &r.settings,
                ca,
            )?))
        }
        ResourceKind::Postgres => Some(Box::new(postgres::Postgres::from_settings(
            &r.name,
            &r.settings,
            ctx.sealed_admin_url.clone(),
        )?)),
        _ => None,
    })
}

/// Reads a list of strings from resource settings (absent = empty).
pub(crate) fn strings(
    resource: &str,
    settings: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Vec<String>> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| ConnectorError::Config {
                        resource: resource.into(),
                        message: format!("`{key}` must be a list of strings"),
                    })
            })
            .collect(),
        Some(_) => Err(ConnectorError::Config {
            resource: resource.into(),
            message: format!("`{key}` must be a list of strings, e.g. {key}: [a, b]"),
        }),
    }
}

/// Checks a resource's connector settings without touching the target (policy load and
/// `breakglass policy check`).
pub fn check(r: &Resource) -> Result<()> {
    let ctx = Context {
        ssh_ca: Some(Arc::new(ssh::Ca::from_seed(&[0u8; 32]))),
        sealed_admin_url: None,
        fingerprint_key: None,
    };
    for_resource(r, &ctx)?;
    if r.kind == ResourceKind::Postgres {
        postgres::Postgres::from_settings(&r.name, &r.settings, None)?.check_offline()?;
    }
    Ok(())
}

/// [`check`] over every resource of a policy: one message per resource whose settings are wrong.
pub fn check_all(resources: &[Resource]) -> Vec<String> {
    resources
        .iter()
        .filter_map(|r| check(r).err().map(|e| e.to_string()))
        .collect()
}
