//! The responder's side of SSH access: which key to send, where the certificate goes, and
//! running ssh with it; plus the host's side of the CA key and the KRL.

use crate::client::Client;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The public keys used when none is given, in order: the user's usual ones in ~/.ssh
/// (id_ed25519, id_ecdsa, id_rsa), then breakglass's own ([`own_key_path`]).
fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("HOME")
        .map(|home| {
            ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
                .iter()
                .map(|f| Path::new(&home).join(".ssh").join(f))
                .collect()
        })
        .unwrap_or_default();
    out.extend(own_key_path().ok());
    out
}

/// The first of [`candidates`] that exists.
pub fn default_key() -> Option<PathBuf> {
    candidates().into_iter().find(|p| p.is_file())
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

/// breakglass's own key for users without one in ~/.ssh:
/// `$XDG_CONFIG_HOME/breakglass/ssh/id_ed25519.pub` (the private key beside it).
pub fn own_key_path() -> Result<PathBuf> {
    Ok(crate::client::config_dir()?
        .join("ssh")
        .join("id_ed25519.pub"))
}

/// breakglass's own Ed25519 key pair, created when missing: the private key mode 0600 in a
/// 0700 directory, without a passphrase (like the certificate beside it, it is only as good
/// as the account it lives in; the certificate is what grants access, for the grant's time).
/// Returns the public key's path and whether the pair was created now.
pub fn ensure_own_key() -> Result<(PathBuf, bool)> {
    use std::os::unix::fs::DirBuilderExt;
    let public = own_key_path()?;
    if public.is_file() {
        return Ok((public, false));
    }
    let private = private_path(&public);
    let dir = public.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let created = if private.is_file() {
        // A pair whose public half went missing: derive it again.
        false
    } else {
        let mut key =
            ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                .context("cannot generate an SSH key")?;
        key.set_comment(key_comment());
        let pem = key
            .to_openssh(ssh_key::LineEnding::LF)
            .context("cannot encode the SSH key")?;
        // Only one of two concurrent runs creates it; the other uses what it wrote.
        write_new(&private, pem.as_bytes(), 0o600)?
    };
    let key = ssh_key::PrivateKey::read_openssh_file(&private)
        .with_context(|| format!("cannot read the SSH key {}", private.display()))?;
    let line = key
        .public_key()
        .to_openssh()
        .context("cannot encode the SSH public key")?;
    write_new(&public, format!("{line}\n").as_bytes(), 0o644)?;
    Ok((public, created))
}

/// `breakglass USER@HOST`, as ssh-keygen would name it.
fn key_comment() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        format!("breakglass {user}")
    } else {
        format!("breakglass {user}@{host}")
    }
}

/// Writes `path` with `mode` unless it exists (atomically: written aside, then linked into
/// place, so no one ever reads half a key). Returns whether this call created it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
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
    let serial = st["serial"].as_u64().unwrap_or(0);
    let (key, cert) = certificate_for(grant_id, serial, key)?;
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

/// The key and certificate of this grant: beside the key given, or beside the first of
/// [`candidates`] whose certificate carries the grant's serial.
fn certificate_for(
    grant_id: &str,
    serial: u64,
    given: Option<&Path>,
) -> Result<(PathBuf, PathBuf)> {
    let keys: Vec<PathBuf> = match key_path(given)? {
        Some(k) if given.is_some() => vec![k],
        _ => candidates().into_iter().filter(|p| p.is_file()).collect(),
    };
    if keys.is_empty() {
        bail!(
            "no SSH key found (~/.ssh, or breakglass's own {}): give the one the certificate was issued for with --ssh-key",
            own_key_path()?.display()
        );
    }
    let mut found = None;
    for k in &keys {
        let cert = cert_path(k);
        if let Ok(text) = std::fs::read_to_string(&cert) {
            if cert_has_serial(&text, serial) {
                return Ok((k.clone(), cert));
            }
            found.get_or_insert(cert);
        }
    }
    match found {
        Some(cert) => bail!(
            "{} is not the certificate of grant {grant_id} (serial {serial}): request again, with --ssh-key KEY.pub for another key",
            cert.display()
        ),
        None => bail!(
            "no certificate at {}: it is written there by `{} request`",
            cert_path(&keys[0]).display(),
            crate::commands::program()
        ),
    }
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
