//! The responder's side of SSH access: which key to send, where the certificate goes, and
//! running ssh with it; plus the host's side of the CA key and the KRL.

use crate::client::Client;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The user's usual public key: the first of id_ed25519, id_ecdsa, id_rsa in ~/.ssh.
pub fn default_key() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
        .iter()
        .map(|f| Path::new(&home).join(".ssh").join(f))
        .find(|p| p.is_file())
}

/// The key to use: the one given (must exist) or the usual one.
pub fn key_path(given: Option<&Path>) -> Result<Option<PathBuf>> {
    match given {
        Some(p) if p.is_file() => Ok(Some(p.to_path_buf())),
        Some(p) => bail!(
            "no SSH public key at {}: give the .pub file of your key with --ssh-key",
            p.display()
        ),
        None => Ok(default_key()),
    }
}

/// Reads a public key file (only the first line; refuses private keys).
pub fn read_public_key(p: &Path) -> Result<String> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read SSH public key {}", p.display()))?;
    if text.contains("PRIVATE KEY") {
        bail!(
            "{} is a private key: give the public half (the .pub file)",
            p.display()
        );
    }
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// `~/.ssh/id_ed25519.pub` → `~/.ssh/id_ed25519-cert.pub`, as ssh looks for it.
pub fn cert_path(key: &Path) -> PathBuf {
    let s = key.to_string_lossy();
    let base = s.strip_suffix(".pub").unwrap_or(&s);
    PathBuf::from(format!("{base}-cert.pub"))
}

/// The private key beside a public key file.
fn private_path(key: &Path) -> PathBuf {
    let s = key.to_string_lossy();
    PathBuf::from(s.strip_suffix(".pub").unwrap_or(&s).to_string())
}

/// Writes the certificate of a grant response beside the key and records the path in it.
pub fn store_certificate(resp: &mut Value, key: &Path) -> Result<()> {
    let Some(cert) = resp
        .pointer("/credential/certificate")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return Ok(());
    };
    let path = cert_path(key);
    std::fs::write(&path, format!("{}\n", cert.trim()))
        .with_context(|| format!("cannot write the certificate to {}", path.display()))?;
    resp["credential"]["path"] = Value::String(path.display().to_string());
    Ok(())
}

/// Runs ssh with the grant's certificate (replaces this process).
pub async fn connect(
    c: &Client,
    grant_id: &str,
    key: Option<&Path>,
    login: Option<&str>,
    options: &[String],
    args: &[String],
) -> Result<()> {
    let g = c
        .get(&format!("/grants/{}", crate::client::urlencode(grant_id)))
        .await?;
    if g["state"].as_str() != Some("active") {
        bail!(
            "grant {grant_id} is {}, not active: request access again",
            g["state"].as_str().unwrap_or("unknown")
        );
    }
    let st = &g["credential_status"];
    if st["kind"].as_str() != Some("ssh") {
        bail!("grant {grant_id} is not for an SSH resource");
    }
    let Some(key) = key_path(key)? else {
        bail!(
            "no SSH key found in ~/.ssh: give the one the certificate was issued for with --ssh-key"
        );
    };
    let cert = cert_path(&key);
    let text = std::fs::read_to_string(&cert).with_context(|| {
        format!(
            "no certificate at {}: it is written there by `breakglass request`",
            cert.display()
        )
    })?;
    let serial = st["serial"].as_u64().unwrap_or(0);
    if !cert_has_serial(&text, serial) {
        bail!(
            "{} is not this grant's certificate (serial {serial}): request again with --ssh-key {}",
            cert.display(),
            key.display()
        );
    }
    let host = st["host"].as_str().ok_or_else(|| {
        anyhow::anyhow!(
            "the resource names no `host`; run ssh yourself: ssh -o CertificateFile={} USER@HOST",
            cert.display()
        )
    })?;
    let port = st["port"].as_u64().unwrap_or(22);
    let user = match login {
        Some(l) => l.to_string(),
        None => st["principals"][0].as_str().unwrap_or("root").to_string(),
    };
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-i")
        .arg(private_path(&key))
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        .args(options.iter().flat_map(|o| ["-o", o.as_str()]))
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("{user}@{host}"))
        .args(args);
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    bail!("cannot run ssh: {err}")
}

/// Whether an OpenSSH certificate line carries this serial (decoded from its blob).
fn cert_has_serial(text: &str, serial: u64) -> bool {
    use base64::Engine as _;
    let Some(b64) = text.split_whitespace().nth(1) else {
        return false;
    };
    let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    // ssh-ed25519-cert: string type, string nonce, string pk, uint64 serial.
    let mut pos = 0usize;
    let string = |pos: &mut usize| -> Option<()> {
        let n = u32::from_be_bytes(blob.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
        *pos = pos.checked_add(4 + n)?;
        Some(())
    };
    let skip = match text.split_whitespace().next() {
        Some("ssh-ed25519-cert-v01@openssh.com") => 3,
        _ => return true, // other key types: let sshd decide
    };
    for _ in 0..skip {
        if string(&mut pos).is_none() {
            return false;
        }
    }
    blob.get(pos..pos + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        == Some(serial)
}

/// Fetches the KRL, checks it parses, and replaces `out` atomically.
pub async fn fetch_krl(c: &Client, out: &Path) -> Result<usize> {
    let bytes = c.get_text("/ssh/krl").await?.bytes().await?;
    let krl = breakglass_connectors::krl::decode(&bytes)
        .context("the server sent something that is not a KRL")?;
    let n: usize = krl.certs.iter().map(|(_, r)| r.len()).sum();
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        out.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot replace {}", out.display()))?;
    Ok(n)
}
