//! `postgres`: one login role per grant, created at activation and dropped when the grant ends.
//!
//! The role is `bg_<grant hex>_<nonce>` (a fresh one per issue), tagged `breakglass:managed grant=… created=…` in its comment,
//! `LOGIN` with a random password (sent to the server only as a SCRAM-SHA-256 verifier, so the
//! clear password never reaches the server's statement log), `VALID UNTIL` the expiry, a
//! connection limit, no attributes, and membership only in the resource's `grant_roles`.
//!
//! Revocation: `NOLOGIN`, terminate the role's backends and wait until they are gone; then, in
//! every database the role owns or holds anything in, one transaction: inventory what it owns
//! (returned as [`Revoked::left_behind`], audited and listed in the incident report),
//! `REASSIGN OWNED` to [`cleanup::ORPHANS`] — a `NOLOGIN` role without attributes, privileges or
//! memberships that breakglass creates and re-checks (never the admin: a `SECURITY DEFINER`
//! function the responder wrote would otherwise run as the admin) — or to `reassign_to` if the
//! policy names one (refused if it is a superuser, has `CREATEROLE`/`BYPASSRLS`/…, can log in,
//! is the admin, or is a member of such a role); every routine it owned made `SECURITY INVOKER`
//! and not executable by PUBLIC, every trigger calling one dropped; `DROP OWNED`, and `DROP ROLE`
//! last. It reports success only once the role no longer exists and no backend of it runs.
//! The sweep drops tagged roles that no open credential owns once they are older than
//! `sweep_grace` (so an issue in flight on another node is never swept); it never touches
//! `breakglass_orphans` (no `bg_` prefix, no tag).

mod cleanup;

pub use cleanup::ORPHANS;

use crate::{Connector, ConnectorError, IssueRequest, Issued, Result, Revoked, Swept};
use async_trait::async_trait;
use base64::Engine as _;
use breakglass_core::time::{Timestamp, rfc3339};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;
use zeroize::Zeroizing;

/// Every role breakglass creates starts with this and carries [`TAG`] in its comment.
pub const ROLE_PREFIX: &str = "bg_";
pub const TAG: &str = "breakglass:managed";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum AdminUrl {
    Env(String),
    File(String),
    /// Stored sealed in breakglass (`breakglass secret put RESOURCE`); `None` until stored.
    Sealed(Option<Zeroizing<String>>),
}

/// The policy setting that keeps the admin URL sealed in breakglass's own store.
pub const ADMIN_URL_SEALED: &str = "admin_url_sealed";

/// Whether a postgres resource's admin URL is stored sealed in breakglass.
pub fn admin_url_is_sealed(s: &Map<String, Value>) -> bool {
    s.get(ADMIN_URL_SEALED).and_then(Value::as_bool) == Some(true)
}

/// Checks a value offered as a sealed admin URL (before it is stored): a postgres:// URL.
pub fn check_admin_url(resource: &str, url: &str) -> Result<()> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(config(
            resource,
            "the admin URL must be a postgres:// URL, e.g. postgres://breakglass_admin:PASSWORD@db.internal:5432/postgres",
        ));
    }
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|_| config(resource, "the admin URL is not a valid postgres:// URL"))
}

pub struct Postgres {
    resource: String,
    admin: AdminUrl,
    grant_roles: Vec<String>,
    connection_limit: i64,
    database: Option<String>,
    reassign_to: Option<String>,
    connect_host: Option<String>,
    connect_port: Option<u16>,
    sweep_grace: Duration,
}

fn config(resource: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Config {
        resource: resource.into(),
        message: message.into(),
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn target(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Target(format!("PostgreSQL: {e}"))
}

/// The stem of a grant's role names (`g-<hex>` → `bg_<hex>`).
pub fn role_stem(grant_id: &str) -> String {
    let tail: String = grant_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .skip_while(|c| *c == 'g')
        .map(|c| c.to_ascii_lowercase())
        .take(50)
        .collect();
    format!("{ROLE_PREFIX}{tail}")
}

/// A fresh role name for one issue of a grant: `bg_<grant hex>_<8 random hex>`. Each issue gets
/// its own, so two issues of one grant never collide — two approvals completing a quorum at
/// once (the loser's role is dropped when its commit loses the race), or an issue left behind by
/// a crash before it was recorded (the sweep drops it) never blocks the next.
pub fn role_for(grant_id: &str) -> String {
    let mut nonce = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    format!("{}_{}", role_stem(grant_id), hex::encode(nonce))
}

/// The grant id a role name of [`role_for`] (or the older `bg_<hex>`) belongs to.
pub fn grant_of_role(role: &str) -> Option<String> {
    let rest = role.strip_prefix(ROLE_PREFIX)?;
    let hex = match rest.split_once('_') {
        Some((hex, nonce)) if nonce.len() == 8 && nonce.bytes().all(|b| b.is_ascii_hexdigit()) => {
            hex
        }
        Some(_) => return None,
        None => rest,
    };
    (!hex.is_empty() && hex.len() <= 50 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("g-{hex}"))
}

/// A SCRAM-SHA-256 verifier for `password` (RFC 5802/7677, as PostgreSQL stores it).
pub fn scram_verifier(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted[..]);
    let hmac = |key: &[u8], msg: &[u8]| -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
        m.update(msg);
        m.finalize().into_bytes().into()
    };
    let client_key = Zeroizing::new(hmac(&salted[..], b"Client Key"));
    let stored_key = Sha256::digest(&client_key[..]);
    let server_key = hmac(&salted[..], b"Server Key");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64(salt),
        b64(&stored_key),
        b64(&server_key)
    )
}

// HMAC accepts keys of any length; this cannot happen.
pub(crate) fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable_hmac())
}

fn random_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    Zeroizing::new(
        (0..32)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect(),
    )
}

impl Postgres {
    /// `sealed_admin_url` is the unsealed value stored for this resource, if any (used only
    /// with `admin_url_sealed: true`).
    pub fn from_settings(
        resource: &str,
        s: &Map<String, Value>,
        sealed_admin_url: Option<Zeroizing<String>>,
    ) -> Result<Self> {
        let string = |k: &str| s.get(k).and_then(Value::as_str).map(String::from);
        if s.get(ADMIN_URL_SEALED)
            .is_some_and(|v| !matches!(v, Value::Bool(_)))
        {
            return Err(config(resource, "`admin_url_sealed` is true or false"));
        }
        let sealed = admin_url_is_sealed(s);
        let admin = match (string("admin_url_env"), string("admin_url_file"), sealed) {
            (Some(e), None, false) => AdminUrl::Env(e),
            (None, Some(f), false) => AdminUrl::File(f),
            (None, None, true) => AdminUrl::Sealed(sealed_admin_url),
            (None, None, false) => {
                if s.contains_key("admin_url") {
                    return Err(config(
                        resource,
                        "`admin_url` would put a password in the policy file: use admin_url_env: VAR or admin_url_file: /path",
                    ));
                }
                return Err(config(
                    resource,
                    "a postgres resource needs `admin_url_env: VAR`, `admin_url_file: /path` or `admin_url_sealed: true` (a postgres:// URL for an admin role)",
                ));
            }
            _ => {
                return Err(config(
                    resource,
                    "give one of `admin_url_env`, `admin_url_file` and `admin_url_sealed: true`, not several",
                ));
            }
        };
        let grant_roles = crate::strings(resource, s, "grant_roles")?;
        if grant_roles.is_empty() {
            return Err(config(
                resource,
                "a postgres resource needs `grant_roles`: the role(s) the temporary login becomes a member of, e.g. grant_roles: [app_admin]",
            ));
        }
        if let Some(r) = grant_roles
            .iter()
            .chain(string("reassign_to").iter())
            .find(|r| r.is_empty() || r.len() > 63 || r.contains('\0'))
        {
            return Err(config(
                resource,
                format!("{r:?} is not a PostgreSQL role name"),
            ));
        }
        if let Some(r) =
            string("reassign_to").filter(|r| r.starts_with(ROLE_PREFIX) || r.starts_with("pg_"))
        {
            return Err(config(
                resource,
                format!(
                    "reassign_to: {r:?} is a grant's own role ({ROLE_PREFIX}…) or a predefined pg_ role; name a NOLOGIN role without attributes, or leave reassign_to out (default: {ORPHANS})"
                ),
            ));
        }
        let connection_limit = match s.get("connection_limit") {
            None => 2,
            Some(v) => v
                .as_i64()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    config(
                        resource,
                        "`connection_limit` must be a number from 1 to 10000",
                    )
                })?,
        };
        let connect_port = match s.get("connect_port") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| config(resource, "`connect_port` must be a TCP port number"))?,
            ),
        };
        let sweep_grace = match string("sweep_grace") {
            None => Duration::from_secs(120),
            Some(t) => breakglass_core::duration::parse(&t)
                .map_err(|e| config(resource, format!("sweep_grace: {e}")))?,
        };
        Ok(Postgres {
            resource: resource.into(),
            admin,
            grant_roles,
            connection_limit,
            database: string("database"),
            reassign_to: string("reassign_to"),
            connect_host: string("connect_host"),
            connect_port,
            sweep_grace,
        })
    }

    /// Checks what can be checked without the target: `reassign_to` must not be the user of the
    /// admin URL (when that URL is readable here; the server checks again at the target).
    pub fn check_offline(&self) -> Result<()> {
        if let (Some(r), Ok(opts)) = (&self.reassign_to, self.admin_options())
            && opts.get_username() == r
        {
            return Err(config(
                &self.resource,
                format!(
                    "reassign_to: {r:?} is the admin user of admin_url: what a grant leaves behind would run with the admin's rights; name a NOLOGIN role without attributes, or leave reassign_to out (default: {ORPHANS})"
                ),
            ));
        }
        Ok(())
    }

    fn admin_options(&self) -> Result<PgConnectOptions> {
        let url = Zeroizing::new(match &self.admin {
            AdminUrl::Env(v) => std::env::var(v).map_err(|_| {
                config(
                    &self.resource,
                    format!("environment variable {v} (admin_url_env) is not set on the server"),
                )
            })?,
            AdminUrl::File(f) => std::fs::read_to_string(f).map_err(|e| {
                config(
                    &self.resource,
                    format!("cannot read admin_url_file {f}: {e}"),
                )
            })?,
            AdminUrl::Sealed(Some(u)) => u.to_string(),
            AdminUrl::Sealed(None) => {
                return Err(config(
                    &self.resource,
                    format!(
                        "no admin URL is stored for {r}: an admin runs `breakglass secret put {r}` with the postgres:// URL on standard input",
                        r = self.resource
                    ),
                ));
            }
        });
        PgConnectOptions::from_str(url.trim())
            .map(|o| o.application_name("breakglass"))
            .map_err(|_| {
                config(
                    &self.resource,
                    "the admin URL is not a valid postgres:// URL",
                )
            })
    }

    /// Where the grant's role logs in (host, port, database): `connect_host`/`connect_port` if
    /// set, else the admin URL's; `database`, else the admin URL's, else `postgres`.
    pub fn upstream(&self) -> Result<(String, u16, String)> {
        let opts = self.admin_options()?;
        let host = self
            .connect_host
            .clone()
            .unwrap_or_else(|| opts.get_host().to_string());
        let port = self.connect_port.unwrap_or_else(|| opts.get_port());
        let db = self
            .database
            .clone()
            .or_else(|| opts.get_database().map(String::from))
            .unwrap_or_else(|| "postgres".into());
        Ok((host, port, db))
    }

    /// A one-connection pool for one operation (closed by the caller).
    async fn connect(&self, database: Option<&str>) -> Result<PgPool> {
        let mut opts = self
            .admin_options()?
            .options([("statement_timeout", "15s"), ("lock_timeout", "10s")]);
        if let Some(db) = database {
            opts = opts.database(db);
        }
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(opts)
            .await
            .map_err(target)
    }
}

fn role_of(handle: &Value) -> Result<&str> {
    handle
        .get("role")
        .and_then(Value::as_str)
        .filter(|r| r.starts_with(ROLE_PREFIX))
        .ok_or_else(|| ConnectorError::Target("credential record names no breakglass role".into()))
}

#[async_trait]
impl Connector for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued> {
        let role = role_for(&req.grant.id);
        let password = match &req.gateway {
            Some(g) => Zeroizing::new(g.upstream_password.to_string()),
            None => random_password(),
        };
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let verifier = scram_verifier(password.as_bytes(), &salt, 4096);
        let q = quote_ident(&role);
        let members: Vec<String> = self.grant_roles.iter().map(|r| quote_ident(r)).collect();
        let comment = format!(
            "{TAG} grant={} created={}",
            req.grant.id,
            req.now.unix_secs()
        );
        let sql = format!(
            "BEGIN; \
             CREATE ROLE {q} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
               CONNECTION LIMIT {} VALID UNTIL '{}' PASSWORD '{verifier}' IN ROLE {}; \
             COMMENT ON ROLE {q} IS '{comment}'; \
             COMMIT;",
            self.connection_limit,
            rfc3339(req.expires_at),
            members.join(", ")
        );
        let conn = self.connect(None).await?;
        // A `reassign_to` that would give what the grant leaves behind more rights than the
        // grant has is refused before anything exists.
        let res = match &self.reassign_to {
            Some(_) => self.owner_for_leftovers(&conn).await.map(|_| ()),
            None => Ok(()),
        };
        let res = match res {
            Ok(()) => sqlx::raw_sql(&sql)
                .execute(&conn)
                .await
                .map(|_| ())
                .map_err(|e| target(format!("cannot create role {role}: {e}"))),
            Err(e) => Err(e),
        };
        conn.close().await;
        res?;
        let (host, port, db) = self.upstream()?;
        let (host, port, password) = match &req.gateway {
            Some(g) => (
                g.host.to_string(),
                g.port,
                Zeroizing::new(g.client_password.to_string()),
            ),
            None => (host, port, password),
        };
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let db_enc: String = db
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let url = format!(
            "postgres://{role}:{}@{host_part}:{port}/{db_enc}",
            password.as_str()
        );
        Ok(Issued {
            credential: Some(json!({
                "url": url,
                "psql": format!("psql '{url}'"),
                "user": role,
                "roles": self.grant_roles,
                "valid_until": rfc3339(req.expires_at),
                "via": if req.gateway.is_some() { "gateway" } else { "direct" },
            })),
            fingerprint: format!("role:{role}"),
            handle: json!({"role": role, "grant_id": req.grant.id}),
        })
    }

    async fn revoke(&self, handle: &Value) -> Result<Revoked> {
        Ok(Revoked {
            left_behind: self.drop_role(role_of(handle)?).await?,
        })
    }

    async fn verify_revoked(&self, handle: &Value) -> Result<bool> {
        let role = role_of(handle)?;
        let conn = self.connect(None).await?;
        let gone = Self::gone(&conn, role).await;
        conn.close().await;
        gone
    }

    async fn sweep(&self, owned: &[Value], now: Timestamp) -> Result<Vec<Swept>> {
        let owned: Vec<&str> = owned.iter().filter_map(|h| role_of(h).ok()).collect();
        let conn = self.connect(None).await?;
        let rows = sqlx::query(
            "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE starts_with(rolname, $1)",
        )
        .bind(ROLE_PREFIX)
        .fetch_all(&conn)
        .await
        .map_err(target)?;
        conn.close().await;
        let grace = i64::try_from(self.sweep_grace.as_secs()).unwrap_or(i64::MAX);
        let mut swept = Vec::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(target)?;
            let comment: Option<String> = row.try_get(1).map_err(target)?;
            let Some(comment) = comment.filter(|c| c.starts_with(TAG)) else {
                continue; // not ours: never touched
            };
            if owned.contains(&name.as_str()) {
                continue;
            }
            let field = |k: &str| {
                comment
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(String::from)
            };
            let created = field("created=")
                .and_then(|c| c.parse::<i64>().ok())
                .unwrap_or(0);
            if !past_grace(created, now, grace) {
                continue; // may be an issue in flight
            }
            let left = self.drop_role(&name).await?;
            let mut note = format!("grant {}", field("grant=").unwrap_or_else(|| "?".into()));
            if !left.is_empty() {
                // Kinds only: the names are the grant holder's, and this note goes to alerts.
                let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
                for o in &left {
                    *kinds.entry(o.kind.as_str()).or_default() += 1;
                }
                let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
                note.push_str(&format!(
                    "; it left {} object(s) behind ({}), now owned by {} and disarmed",
                    left.len(),
                    kinds.join(", "),
                    self.reassign_to.as_deref().unwrap_or(ORPHANS)
                ));
            }
            swept.push(Swept { name, note });
        }
        Ok(swept)
    }
}

/// Whether a role created at `created` (Unix seconds, as its tag says: the second it was
/// created in, truncated) is older than `grace` seconds for certain at `now`. Both times are
/// whole seconds, so one more second is needed: `now - created >= grace` held for a role
/// created 0.9 s before a second ended and swept 0.1 s into the next one with `grace` 1 s.
fn past_grace(created: i64, now: Timestamp, grace: i64) -> bool {
    now.unix_secs().saturating_sub(created) > grace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_grace_holds_whatever_the_fraction_of_a_second() {
        // Created at 100.9 s (tag: created=100), grace 1 s.
        let at = |ms: i64| Timestamp(ms);
        assert!(!past_grace(100, at(101_100), 1), "0.2 s old");
        assert!(
            !past_grace(100, at(101_999), 1),
            "1.099 s old at most, 0.1 s at least"
        );
        assert!(past_grace(100, at(102_000), 1), "at least 1.1 s old");
        assert!(!past_grace(100, at(219_999), 120));
        assert!(past_grace(100, at(221_000), 120));
    }

    #[test]
    fn scram_matches_rfc7677() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let v = scram_verifier(b"pencil", &salt, 4096);
        // ServerKey from the RFC's server signature derivation, StoredKey = H(ClientKey).
        assert!(
            v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{v}"
        );
        assert_eq!(v.split('$').count(), 3);
    }

    #[test]
    fn role_names_and_quoting() {
        let r = role_for("g-00ff");
        assert!(
            r.starts_with("bg_00ff_") && r.len() == "bg_00ff_".len() + 8,
            "{r}"
        );
        assert_ne!(role_for("g-00ff"), role_for("g-00ff"));
        assert_eq!(grant_of_role(&r).as_deref(), Some("g-00ff"));
        assert_eq!(grant_of_role("bg_00ff").as_deref(), Some("g-00ff"));
        for bad in [
            "bg_",
            "bg_00ff_12",
            "bg_00ff_1234567z",
            "bg_zz",
            "pg_00ff",
            "bg_00_ff_12345678",
        ] {
            assert_eq!(grant_of_role(bad), None, "{bad}");
        }
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(role_for(&"g-".repeat(100)).len() <= 63);
    }

    #[test]
    fn settings_say_what_is_wrong() {
        let s = |v: Value| v.as_object().cloned().unwrap();
        for bad in [
            json!({"grant_roles": ["a"]}),
            json!({"admin_url": "postgres://u:p@h/db", "grant_roles": ["a"]}),
            json!({"admin_url_env": "X"}),
            json!({"admin_url_env": "X", "grant_roles": ["a"], "connection_limit": 0}),
            json!({"admin_url_env": "X", "admin_url_file": "/f", "grant_roles": ["a"]}),
        ] {
            assert!(
                Postgres::from_settings("db", &s(bad.clone()), None).is_err(),
                "{bad}"
            );
        }
        assert!(Postgres::from_settings("db", &s(json!({"admin_url_env": "X", "grant_roles": ["app_admin"], "connection_limit": 2})), None).is_ok());
        assert!(
            Postgres::from_settings(
                "db",
                &s(json!({"admin_url_sealed": true, "grant_roles": ["a"]})),
                None
            )
            .is_ok()
        );
        for bad in [
            json!({"admin_url_sealed": "yes", "grant_roles": ["a"]}),
            json!({"admin_url_sealed": true, "admin_url_env": "X", "grant_roles": ["a"]}),
            json!({"admin_url_sealed": false, "grant_roles": ["a"]}),
        ] {
            assert!(
                Postgres::from_settings("db", &s(bad.clone()), None).is_err(),
                "{bad}"
            );
        }
        // reassign_to: never a grant's own role or a predefined role, never the admin user.
        for bad in ["bg_123", "pg_read_all_data"] {
            let v = json!({"admin_url_env": "X", "grant_roles": ["a"], "reassign_to": bad});
            let e = Postgres::from_settings("db", &s(v), None).err().unwrap();
            assert!(e.to_string().contains("reassign_to"), "{e}");
        }
        let sealed = |r: &str| {
            Postgres::from_settings(
                "db",
                &s(json!({"admin_url_sealed": true, "grant_roles": ["a"], "reassign_to": r})),
                Some(Zeroizing::new(
                    "postgres://boss:pw@127.0.0.1/postgres".into(),
                )),
            )
            .unwrap()
            .check_offline()
        };
        let e = sealed("boss").err().unwrap();
        assert!(e.to_string().contains("admin user"), "{e}");
        assert!(sealed("keeper").is_ok());
        assert!(check_admin_url("db", "postgres://u:p@127.0.0.1:5432/postgres").is_ok());
        for bad in [
            "",
            "mysql://u:p@h/db",
            "u:p@h",
            "postgres://u:p@h:notaport/db",
        ] {
            assert!(check_admin_url("db", bad).is_err(), "{bad}");
        }
    }
}
