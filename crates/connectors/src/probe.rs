//! Drill probes: USE a freshly issued credential at the real target, and after revocation
//! VERIFY that the target refuses it. ssh runs the real `ssh` client with the certificate
//! (`id`); postgres logs in as the granted role (`SELECT current_user`, role membership).
//! Errors carry what the target said, clipped, so a drill's failing step says why.

use crate::{ConnectorError, Result};
use rand::RngCore;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{LineEnding, PrivateKey};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long one probe may take at the target.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

fn clip(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A throw-away Ed25519 key pair for one drill, in a private directory removed on drop.
pub struct DrillKey {
    dir: PathBuf,
    pub public_line: String,
}

impl DrillKey {
    pub fn new(base: &Path) -> Result<DrillKey> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut seed[..]);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment("breakglass-drill");
        let io = |e: std::io::Error| ConnectorError::Target(format!("drill key: {e}"));
        let mut name = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut name);
        let dir = base.join(format!("drill-{}", hex::encode(name)));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&dir)
                .map_err(io)?;
        }
        let text = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| ConnectorError::Target(format!("drill key: {e}")))?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("id"))
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
        }
        let public_line = key
            .public_key()
            .to_openssh()
            .map_err(|e| ConnectorError::Target(format!("drill key: {e}")))?;
        Ok(DrillKey { dir, public_line })
    }

    /// Writes the certificate the grant issued beside the key.
    pub fn set_certificate(&self, cert: &str) -> Result<()> {
        std::fs::write(self.dir.join("id-cert.pub"), format!("{}\n", cert.trim()))
            .map_err(|e| ConnectorError::Target(format!("drill certificate: {e}")))
    }

    /// Runs `ssh … id` with the key and certificate: (exit code, stdout, stderr).
    /// [`Self::ssh_once`], tried once more when the host closed the connection before the key
    /// exchange (a busy sshd, a dropped connection): that says nothing about access, and a
    /// drill must not page anyone for it. Any answer after the key exchange is final.
    async fn ssh_run(
        &self,
        host: &str,
        port: u16,
        principal: &str,
    ) -> Result<(Option<i32>, String, String)> {
        let first = self.ssh_once(host, port, principal).await?;
        if first.0 == Some(255) && first.2.contains("kex_exchange_identification") {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            return self.ssh_once(host, port, principal).await;
        }
        Ok(first)
    }

    async fn ssh_once(
        &self,
        host: &str,
        port: u16,
        principal: &str,
    ) -> Result<(Option<i32>, String, String)> {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.arg("-i")
            .arg(self.dir.join("id"))
            .arg("-o")
            .arg(format!(
                "CertificateFile={}",
                self.dir.join("id-cert.pub").display()
            ))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-F",
                "/dev/null",
                "-p",
            ])
            .arg(port.to_string())
            .arg("-l")
            .arg(principal)
            .arg(host)
            .arg("id")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(PROBE_TIMEOUT, cmd.output())
            .await
            .map_err(|_| ConnectorError::Target(format!("ssh to {host}:{port} timed out")))?
            .map_err(|e| ConnectorError::Target(format!("could not run ssh: {e}")))?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ))
    }

    /// Logs in with the key and certificate and runs `id`: Ok(output) when the host let us in.
    pub async fn ssh_id(&self, host: &str, port: u16, principal: &str) -> Result<String> {
        let (code, stdout, stderr) = self.ssh_run(host, port, principal).await?;
        if code == Some(0) && stdout.contains("uid=") {
            Ok(clip(&stdout))
        } else {
            Err(ConnectorError::Target(format!(
                "ssh {principal}@{host}:{port} refused or failed (exit {}): {}",
                code.map_or("signal".to_string(), |c| c.to_string()),
                clip(&stderr)
            )))
        }
    }

    /// Whether sshd itself refuses the certificate (authentication fails: `Permission denied`),
    /// as it must once the host read the KRL. A login the force-command then ends does not
    /// count: the host still accepted the revoked certificate.
    pub async fn ssh_refused(&self, host: &str, port: u16, principal: &str) -> Result<bool> {
        let (code, _, stderr) = self.ssh_run(host, port, principal).await?;
        Ok(code == Some(255) && stderr.contains("Permission denied"))
    }
}

impl Drop for DrillKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn pg_connect(url: &str) -> Result<PgConnection> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| ConnectorError::Target(format!("the drill's database URL: {e}")))?;
    tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&opts))
        .await
        .map_err(|_| ConnectorError::Target("PostgreSQL login timed out".into()))?
        .map_err(|e| {
            ConnectorError::Target(format!("PostgreSQL login failed: {}", clip(&e.to_string())))
        })
}

/// Logs in with the grant's URL, checks `current_user` is `role` and that it holds every
/// granted role; Ok(current_user).
pub async fn pg_use(url: &str, role: &str, granted: &[String]) -> Result<String> {
    let mut conn = pg_connect(url).await?;
    let target =
        |e: sqlx::Error| ConnectorError::Target(format!("PostgreSQL: {}", clip(&e.to_string())));
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .map_err(target)?;
    if user != role {
        return Err(ConnectorError::Target(format!(
            "logged in as {user:?}, expected the grant's role {role:?}"
        )));
    }
    for g in granted {
        let member: Option<bool> =
            sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
                .bind(g)
                .fetch_one(&mut conn)
                .await
                .map_err(target)?;
        if member != Some(true) {
            return Err(ConnectorError::Target(format!(
                "the grant's role {user} is not a member of {g}"
            )));
        }
    }
    let _ = conn.close().await;
    Ok(user)
}

/// Whether PostgreSQL now refuses the grant's login (Ok(true)), or still lets it in.
pub async fn pg_refused(url: &str) -> bool {
    match pg_connect(url).await {
        Ok(c) => {
            let _ = c.close().await;
            false
        }
        Err(_) => true,
    }
}
