//! `ssh`: OpenSSH user certificates signed by breakglass's own Ed25519 CA.
//!
//! A certificate names the grant and the user in its key id, carries the resource's principals,
//! a random 64-bit serial, `valid-before` = the grant's expiry, `permit-pty` (other permissions
//! only if the resource lists them) and — unless the resource turns it off — a `force-command`
//! running `breakglass session` on the host, which ends the shell at the grant's expiry or as
//! soon as the serial appears in the host's KRL. Early revocation puts the serial in the KRL the
//! server publishes (see [`crate::krl`]); sshd refuses new logins once the host has refreshed it.

use crate::{Connector, ConnectorError, IssueRequest, Issued, Result};
use async_trait::async_trait;
use breakglass_core::time::rfc3339;
use rand::RngCore;
use serde_json::{Map, Value, json};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, PrivateKey, PublicKey};
use std::sync::Arc;

/// The default place of `breakglass` on hosts, and of the KRL sshd reads.
pub const DEFAULT_SESSION_COMMAND: &str = "/usr/local/bin/breakglass";
pub const DEFAULT_HOST_KRL: &str = "/etc/ssh/breakglass.krl";

/// The certificate authority.
pub struct Ca {
    key: PrivateKey,
}

impl Ca {
    /// The CA from its 32-byte Ed25519 seed (kept sealed by the server).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(seed));
        key.set_comment("breakglass-ca");
        Ca { key }
    }

    /// The line for sshd's `TrustedUserCAKeys`.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| String::new())
    }

    /// The CA's public key blob (what a KRL names).
    pub fn public_blob(&self) -> Vec<u8> {
        self.key.public_key().to_bytes().unwrap_or_default()
    }
}

/// A fresh Ed25519 key (a glass case's own): its OpenSSH private key text and public key.
pub fn new_key(comment: &str) -> Result<(zeroize::Zeroizing<String>, PublicKey)> {
    let mut key = PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| ConnectorError::Target(format!("cannot generate an SSH key: {e}")))?;
    key.set_comment(comment);
    let text = key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| ConnectorError::Target(format!("cannot encode an SSH key: {e}")))?;
    Ok((text, key.public_key().clone()))
}

/// Parses a requester's OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
pub fn parse_public_key(text: &str) -> Result<PublicKey> {
    let text = text.trim();
    if text.len() > 16 * 1024 {
        return Err(ConnectorError::Input(
            "the SSH public key is larger than 16 KiB; pass the .pub file of an ordinary key"
                .into(),
        ));
    }
    if text.contains("-cert-v01@openssh.com") {
        return Err(ConnectorError::Input(
            "that is an SSH certificate, not a public key: pass the key's .pub file (e.g. ~/.ssh/id_ed25519.pub)".into(),
        ));
    }
    PublicKey::from_openssh(text).map_err(|e| {
        ConnectorError::Input(format!(
            "not an OpenSSH public key ({e}): pass a .pub file such as ~/.ssh/id_ed25519.pub"
        ))
    })
}

const EXTENSIONS: [(&str, &str); 4] = [
    ("agent-forwarding", "permit-agent-forwarding"),
    ("port-forwarding", "permit-port-forwarding"),
    ("x11-forwarding", "permit-X11-forwarding"),
    ("user-rc", "permit-user-rc"),
];

/// Issues certificates for one `kind: ssh` resource.
pub struct SshCert {
    resource: String,
    ca: Arc<Ca>,
    principals: Vec<String>,
    extensions: Vec<&'static str>,
    host: Option<String>,
    port: u16,
    /// `breakglass session` on the host, unless sessions are left to plain OpenSSH.
    session_command: Option<String>,
    host_krl: Option<String>,
    source_address: Vec<String>,
    recording: breakglass_core::recording::Mode,
}

fn config(resource: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Config {
        resource: resource.into(),
        message: message.into(),
    }
}

fn safe_arg(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@=".contains(c))
}

impl SshCert {
    pub fn from_settings(resource: &str, s: &Map<String, Value>, ca: Arc<Ca>) -> Result<Self> {
        let principals = crate::strings(resource, s, "principals")?;
        if principals.is_empty() {
            return Err(config(
                resource,
                "an ssh resource needs `principals`: the login names the certificate allows, e.g. principals: [root]",
            ));
        }
        if let Some(p) = principals
            .iter()
            .find(|p| p.is_empty() || p.len() > 255 || p.contains([',', ' ', '\n']))
        {
            return Err(config(
                resource,
                format!("principal {p:?} is not a valid login name"),
            ));
        }
        let mut extensions = vec!["permit-pty"];
        for e in crate::strings(resource, s, "extensions")? {
            let Some((_, name)) = EXTENSIONS.iter().find(|(k, _)| *k == e) else {
                let known: Vec<_> = EXTENSIONS.iter().map(|(k, _)| *k).collect();
                return Err(config(
                    resource,
                    format!("unknown extension {e:?}; known: {}", known.join(", ")),
                ));
            };
            extensions.push(name);
        }
        let string = |k: &str| s.get(k).and_then(Value::as_str).map(String::from);
        let end_sessions = s
            .get("end_sessions")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let session_command = end_sessions
            .then(|| string("session_command").unwrap_or_else(|| DEFAULT_SESSION_COMMAND.into()));
        let host_krl =
            end_sessions.then(|| string("host_krl").unwrap_or_else(|| DEFAULT_HOST_KRL.into()));
        for v in session_command.iter().chain(host_krl.iter()) {
            if !v.starts_with('/') || !safe_arg(v) {
                return Err(config(
                    resource,
                    format!("{v:?} must be an absolute path without spaces or shell characters"),
                ));
            }
        }
        let port = match s.get("port") {
            None => 22,
            Some(v) => v
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| config(resource, "`port` must be a TCP port number"))?,
        };
        let recording = breakglass_core::recording::RecordingSettings::from_settings(s)
            .map_err(|e| config(resource, e))?
            .mode;
        if session_command.is_none() && recording != breakglass_core::recording::Mode::Off {
            return Err(config(
                resource,
                "end_sessions: false leaves sessions to plain OpenSSH, which cannot record them: \
                 also set recording: off (or keep end_sessions)",
            ));
        }
        let source_address = crate::strings(resource, s, "source_address")?;
        if let Some(a) = source_address
            .iter()
            .find(|a| !safe_arg(a) || a.contains('='))
        {
            return Err(config(
                resource,
                format!("source_address {a:?} is not an address or CIDR block"),
            ));
        }
        Ok(SshCert {
            resource: resource.into(),
            ca,
            principals,
            extensions,
            host: string("host"),
            port,
            session_command,
            host_krl,
            source_address,
            recording,
        })
    }
}

impl SshCert {
    /// One certificate of an offline glass case's ladder, for the case's own key: valid from
    /// `valid_after` to `valid_before` exactly (the caller keeps that ≤ 24 h), with a fresh
    /// serial. Its force-command (unless sessions are left to OpenSSH) ends the session at
    /// `valid_before` and watches the host's KRL, but never records: the case is for when the
    /// server cannot be reached. Returns (serial, certificate line).
    pub fn sign_ladder(
        &self,
        subject: &PublicKey,
        case_id: &str,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<(u64, String)> {
        let mut rng = rand::rngs::OsRng;
        let serial = loop {
            let s = rng.next_u64();
            if s != 0 {
                break s;
            }
        };
        let err =
            |e: ssh_key::Error| ConnectorError::Target(format!("cannot sign the certificate: {e}"));
        let mut b = Builder::new_with_random_nonce(
            &mut rng,
            subject.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(err)?;
        b.serial(serial).map_err(err)?;
        b.cert_type(CertType::User).map_err(err)?;
        b.key_id(format!(
            "breakglass glass-case={case_id} resource={}",
            self.resource
        ))
        .map_err(err)?;
        b.comment(format!("breakglass glass case {case_id}"))
            .map_err(err)?;
        for p in &self.principals {
            b.valid_principal(p.clone()).map_err(err)?;
        }
        for e in &self.extensions {
            b.extension(*e, "").map_err(err)?;
        }
        if let Some(cmd) = &self.session_command {
            let mut fc =
                format!("{cmd} session --grant {case_id} --serial {serial} --until {valid_before}");
            if let Some(k) = &self.host_krl {
                fc.push_str(&format!(" --krl {k}"));
            }
            b.critical_option("force-command", fc).map_err(err)?;
        }
        if !self.source_address.is_empty() {
            b.critical_option("source-address", self.source_address.join(","))
                .map_err(err)?;
        }
        let cert = b.sign(&self.ca.key).map_err(err)?;
        Ok((serial, cert.to_openssh().map_err(err)?))
    }

    pub fn principals(&self) -> &[String] {
        &self.principals
    }

    /// Where the host is, when the policy says.
    pub fn host(&self) -> (Option<&str>, u16) {
        (self.host.as_deref(), self.port)
    }
}

#[async_trait]
impl Connector for SshCert {
    fn kind(&self) -> &'static str {
        "ssh"
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued> {
        let key_text = req.ssh_public_key.ok_or_else(|| {
            ConnectorError::Input(format!(
                "{} is an SSH resource: pass your public key with --ssh-key ~/.ssh/id_ed25519.pub",
                self.resource
            ))
        })?;
        let subject = parse_public_key(key_text)?;
        let mut rng = rand::rngs::OsRng;
        let serial = loop {
            let s = rng.next_u64();
            if s != 0 {
                break s;
            }
        };
        let now = u64::try_from(req.now.unix_secs()).unwrap_or(0);
        let valid_before = u64::try_from(req.expires_at.unix_secs()).unwrap_or(0);
        // A minute of grace for host clocks running behind; never past the grant's expiry.
        let valid_after = now.saturating_sub(60);
        let key_id = format!(
            "breakglass grant={} user={} resource={}",
            req.grant.id, req.grant.user, req.grant.resource
        );
        let err =
            |e: ssh_key::Error| ConnectorError::Target(format!("cannot sign the certificate: {e}"));
        let mut b = Builder::new_with_random_nonce(
            &mut rng,
            subject.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(err)?;
        b.serial(serial).map_err(err)?;
        b.cert_type(CertType::User).map_err(err)?;
        b.key_id(key_id.clone()).map_err(err)?;
        b.comment(format!("breakglass {}", req.grant.id))
            .map_err(err)?;
        for p in &self.principals {
            b.valid_principal(p.clone()).map_err(err)?;
        }
        for e in &self.extensions {
            b.extension(*e, "").map_err(err)?;
        }
        if let Some(cmd) = &self.session_command {
            let mut fc = format!(
                "{cmd} session --grant {} --serial {serial} --until {valid_before}",
                req.grant.id
            );
            if let Some(k) = &self.host_krl {
                fc.push_str(&format!(" --krl {k}"));
            }
            if self.recording != breakglass_core::recording::Mode::Off {
                let t = req.recorder.ok_or_else(|| {
                    ConnectorError::Target(format!(
                        "{} records sessions, but the server does not know the URL hosts reach it at: \
                         start `breakglass serve` with --public-url",
                        self.resource
                    ))
                })?;
                if !safe_arg(t.url) || !safe_arg(t.token) {
                    return Err(ConnectorError::Target(format!(
                        "the server URL {:?} cannot go into a certificate's force-command \
                         (letters, digits and /._-+:@= only)",
                        t.url
                    )));
                }
                // The token goes in the environment, not the command line other users can see.
                fc = format!(
                    "BREAKGLASS_RECORDER_TOKEN={} {fc} --record {} --server {}",
                    t.token,
                    self.recording.as_str(),
                    t.url
                );
            }
            b.critical_option("force-command", fc).map_err(err)?;
        }
        if !self.source_address.is_empty() {
            b.critical_option("source-address", self.source_address.join(","))
                .map_err(err)?;
        }
        let cert = b.sign(&self.ca.key).map_err(err)?;
        let text = cert.to_openssh().map_err(err)?;
        let key_fp = subject.fingerprint(HashAlg::Sha256).to_string();
        let mut credential = json!({
            "certificate": text,
            "serial": serial,
            "key_id": key_id,
            "principals": self.principals,
            "valid_before": rfc3339(req.expires_at),
            "public_key_fingerprint": key_fp,
        });
        if let Some(h) = &self.host {
            credential["host"] = json!(h);
            credential["port"] = json!(self.port);
        }
        Ok(Issued {
            credential: Some(credential),
            fingerprint: format!("serial:{serial} key:{key_fp}"),
            handle: json!({
                "host": self.host,
                "port": self.port,
                "serial": serial,
                "key_id": key_id,
                "valid_before": valid_before,
                "principals": self.principals,
                "public_key_fingerprint": key_fp,
            }),
        })
    }

    /// The revoked certificate's serial is published in the KRL from now on (the server builds
    /// the KRL from its credential records); hosts refuse it once they have refreshed it.
    async fn revoke(&self, handle: &Value) -> Result<crate::Revoked> {
        handle
            .get("serial")
            .and_then(Value::as_u64)
            .map(|_| crate::Revoked::default())
            .ok_or_else(|| {
                ConnectorError::Target("credential record has no certificate serial".into())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_core::grant::GrantInfo;
    use breakglass_core::time::Timestamp;

    fn settings(yaml: serde_json::Value) -> Map<String, Value> {
        yaml.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn certificate_carries_the_grant() {
        let ca = Arc::new(Ca::from_seed(&[7u8; 32]));
        let c = SshCert::from_settings(
            "bastion",
            &settings(json!({"principals": ["root"], "extensions": ["port-forwarding"]})),
            ca.clone(),
        )
        .unwrap();
        let user = PrivateKey::from(Ed25519Keypair::from_seed(&[1u8; 32]));
        let pubkey = user.public_key().to_openssh().unwrap();
        let grant = GrantInfo {
            rev: 0,
            drill: false,
            training: None,
            id: "g-1".into(),
            user: "alice".into(),
            resource: "bastion".into(),
            policy: "p".into(),
            reason: "r".into(),
            ticket: None,
            requested_at: Timestamp(0),
            duration_ms: 0,
            max_ms: 0,
            review_by: vec![],
            review_within_ms: None,
            notify: vec![],
            flags: vec![],
            ssh_public_key: None,
        };
        let out = c
            .issue(&IssueRequest {
                gateway: None,
                grant: &grant,
                now: Timestamp(1_000_000_000_000),
                expires_at: Timestamp(1_000_000_900_000),
                recorder: Some(crate::RecorderTicket {
                    url: "https://bg.example:8700",
                    token: "tok-en_1",
                }),
                ssh_public_key: Some(&pubkey),
            })
            .await
            .unwrap();
        let cred = out.credential.unwrap();
        let cert =
            ssh_key::Certificate::from_openssh(cred["certificate"].as_str().unwrap()).unwrap();
        assert_eq!(cert.valid_before(), 1_000_000_900);
        assert_eq!(cert.valid_principals(), ["root".to_string()]);
        assert!(cert.key_id().contains("grant=g-1") && cert.key_id().contains("user=alice"));
        assert!(cert.extensions().contains_key("permit-pty"));
        assert!(cert.extensions().contains_key("permit-port-forwarding"));
        assert!(!cert.extensions().contains_key("permit-agent-forwarding"));
        let fc = &cert.critical_options()["force-command"];
        assert!(
            fc.starts_with(
                "BREAKGLASS_RECORDER_TOKEN=tok-en_1 /usr/local/bin/breakglass session --grant g-1 --serial "
            ),
            "{fc}"
        );
        assert!(
            fc.ends_with(" --record required --server https://bg.example:8700"),
            "{fc}"
        );
        assert_eq!(cert.serial(), out.handle["serial"].as_u64().unwrap());
        assert!(!out.fingerprint.contains("AAAA"));
        cert.validate_at(
            1_000_000_100,
            [&ca.key.public_key().fingerprint(HashAlg::Sha256)],
        )
        .unwrap();
    }

    #[test]
    fn bad_keys_and_settings_say_why() {
        assert!(parse_public_key("hello").is_err());
        assert!(parse_public_key(&"A".repeat(20_000)).is_err());
        assert!(parse_public_key("ssh-ed25519-cert-v01@openssh.com AAAA").is_err());
        let ca = Arc::new(Ca::from_seed(&[7u8; 32]));
        for bad in [
            json!({}),
            json!({"principals": []}),
            json!({"principals": ["a b"]}),
            json!({"principals": ["r"], "extensions": ["root-shell"]}),
            json!({"principals": ["r"], "session_command": "breakglass; rm"}),
            json!({"principals": ["r"], "port": 70000}),
            json!({"principals": ["r"], "recording": "always"}),
            json!({"principals": ["r"], "end_sessions": false}),
        ] {
            assert!(
                SshCert::from_settings("b", &settings(bad.clone()), ca.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
