//! `exec`: the operator's own programs for grant and revoke — argv without a shell, a JSON
//! document on stdin (grant id, user, resource, reason, ticket, expiry), a timeout; non-zero exit
//! is failure; the grant program's stdout is the credential handed to the responder once.
//!
//! The audit trail gets `hmac-sha256:<32 hex>` of the credential, keyed with the server's
//! fingerprint key (derived from its KEK): stable for the same credential on one installation,
//! and useless for checking guesses of a weak credential without that key.

use async_trait::async_trait;
use breakglass_core::grant::GrantInfo;
use breakglass_core::time::{Timestamp, rfc3339};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::{Connector, ConnectorError, IssueRequest, Issued, Result, Revoked};

/// Runs operator programs: `grant` and `revoke` argv (no shell), a JSON document on stdin,
/// a timeout; non-zero exit is failure; the grant program's stdout is the credential.
pub struct Exec {
    grant: Vec<String>,
    revoke: Vec<String>,
    timeout: Duration,
    fingerprint_key: Zeroizing<[u8; 32]>,
}

/// `hmac-sha256:` and the first 128 bits of HMAC-SHA256(key, credential), in hex.
pub fn fingerprint(key: &[u8; 32], credential: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| crate::postgres::unreachable_hmac());
    m.update(credential);
    format!(
        "hmac-sha256:{}",
        &hex::encode(m.finalize().into_bytes())[..32]
    )
}

fn argv(
    settings: &serde_json::Map<String, Value>,
    key: &str,
    resource: &str,
) -> Result<Vec<String>> {
    let v = crate::strings(resource, settings, key)?;
    if v.is_empty() || !v[0].starts_with('/') {
        return Err(ConnectorError::Config {
            resource: resource.into(),
            message: format!(
                "exec resource {resource}: `{key}` must be a list whose first item is an absolute program path, e.g. {key}: [\"/usr/local/bin/{resource}-{key}\"]"
            ),
        });
    }
    Ok(v)
}

impl Exec {
    /// `fingerprint_key` keys the audit fingerprint (without one, a random key of this
    /// connector instance: fingerprints are then not comparable across operations).
    pub fn from_settings(
        resource: &str,
        settings: &serde_json::Map<String, Value>,
        fingerprint_key: Option<Zeroizing<[u8; 32]>>,
    ) -> Result<Self> {
        let timeout = settings
            .get("timeout")
            .and_then(Value::as_str)
            .map(|t| {
                breakglass_core::duration::parse(t).map_err(|e| ConnectorError::Config {
                    resource: resource.into(),
                    message: format!("timeout: {e}"),
                })
            })
            .transpose()?
            .unwrap_or(Duration::from_secs(30));
        Ok(Exec {
            grant: argv(settings, "grant", resource)?,
            revoke: argv(settings, "revoke", resource)?,
            timeout,
            fingerprint_key: fingerprint_key.unwrap_or_else(|| {
                let mut k = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(&mut k[..]);
                k
            }),
        })
    }

    async fn run(&self, argv: &[String], input: &Value) -> Result<String> {
        self.run_inner(argv, input)
            .await
            .map_err(ConnectorError::Target)
    }

    async fn run_inner(
        &self,
        argv: &[String],
        input: &Value,
    ) -> std::result::Result<String, String> {
        let (prog, args) = argv.split_first().ok_or("empty command")?;
        let mut child = tokio::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {prog}: {e}"))?;
        let body = serde_json::to_vec(input).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&body).await;
        }
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stderr = child.stderr.take().ok_or("no stderr")?;
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut so = (&mut stdout).take(64 * 1024);
            let mut se = (&mut stderr).take(4 * 1024);
            let (a, b) = tokio::join!(so.read_to_end(&mut out), se.read_to_end(&mut err));
            a.and(b).map_err(|e| e.to_string())?;
            let status = child.wait().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, out, err))
        };
        let (status, out, err) =
            tokio::time::timeout(self.timeout, work)
                .await
                .map_err(|_| {
                    format!(
                        "{prog} did not finish within {}",
                        breakglass_core::duration::format(self.timeout)
                    )
                })??;
        if !status.success() {
            let e = String::from_utf8_lossy(&err);
            return Err(format!(
                "{prog} exited with {status}: {}",
                e.trim().chars().take(500).collect::<String>()
            ));
        }
        String::from_utf8(out).map_err(|_| format!("{prog} printed non-UTF-8 output"))
    }
}

fn doc(action: &str, grant: &GrantInfo, expires_at: Timestamp) -> Value {
    json!({
        "action": action,
        "grant_id": grant.id,
        "user": grant.user,
        "resource": grant.resource,
        "reason": grant.reason,
        "ticket": grant.ticket,
        "expires_at": rfc3339(expires_at),
        "expires_at_unix": expires_at.unix_secs(),
    })
}

#[async_trait]
impl Connector for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued> {
        let input = doc("grant", req.grant, req.expires_at);
        let out = zeroize::Zeroizing::new(self.run(&self.grant, &input).await?);
        let text = out.trim();
        let credential = if text.is_empty() {
            None
        } else {
            Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
        };
        Ok(Issued {
            credential,
            fingerprint: fingerprint(&self.fingerprint_key, text.as_bytes()),
            handle: input,
        })
    }

    async fn revoke(&self, handle: &Value) -> Result<Revoked> {
        let mut input = handle.clone();
        input["action"] = json!("revoke");
        self.run(&self.revoke, &input)
            .await
            .map(|_| Revoked::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn fingerprints_are_keyed() {
        let k1 = [7u8; 32];
        let k2 = [8u8; 32];
        let f = fingerprint(&k1, b"hunter2");
        assert!(f.starts_with("hmac-sha256:") && f.len() == 12 + 32, "{f}");
        assert_eq!(f, fingerprint(&k1, b"hunter2"), "stable under one key");
        assert_ne!(
            f,
            fingerprint(&k2, b"hunter2"),
            "another key, another fingerprint"
        );
        assert_ne!(f, fingerprint(&k1, b"hunter3"));
        let plain = hex::encode(sha2::Sha256::digest(b"hunter2"));
        assert!(!plain.contains(&f["hmac-sha256:".len()..]));
    }
}
