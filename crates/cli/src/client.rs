//! The HTTP client side of the CLI and the saved login session.

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// Default server address (also what `breakglass serve` listens on by default).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8700";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    pub server: String,
    pub user: String,
    pub token: String,
    pub expires_at: String,
}

/// `$XDG_CONFIG_HOME/breakglass` (or `~/.config/breakglass`): the CLI's own files.
pub fn config_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("breakglass"))
}

/// `$XDG_CONFIG_HOME/breakglass/session.json` (or `~/.config/...`).
pub fn session_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("session.json"))
}

pub fn load_session() -> Result<Option<SavedSession>> {
    let p = session_path()?;
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| {
            format!(
                "{} is corrupt: delete it and run `breakglass login` again",
                p.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

pub fn save_session(s: &SavedSession) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let p = session_path()?;
    if let Some(dir) = p.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = p.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(s)?.as_bytes())?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &p)?;
    Ok(p)
}

pub fn delete_session() -> Result<()> {
    let p = session_path()?;
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// An error answer from the server (RFC 9457 problem).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Problem {
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default)]
    pub hint: Option<String>,
}

impl Problem {
    pub fn slug(&self) -> &str {
        self.r#type
            .rsplit("/problems/")
            .next()
            .unwrap_or(&self.r#type)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.detail)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

pub struct Client {
    pub base: String,
    pub token: Option<String>,
    http: reqwest::Client,
    /// The extra CA this client trusts, if any.
    pub ca: Option<std::path::PathBuf>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>, ca: Option<&std::path::Path>) -> Result<Self> {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .context("the CA file is not a PEM certificate")?,
            );
        }
        let http = builder
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("breakglass-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
            ca: ca.map(|p| p.to_path_buf()),
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.call_timeout(method, path, body, None).await
    }

    async fn call_timeout(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| {
            format!("cannot reach the breakglass server at {}: is it running? (set --server or BREAKGLASS_SERVER)", self.base)
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).context("the server sent invalid JSON");
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(p.into()),
            Err(_) => Err(anyhow!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A POST that may take minutes (a drill waits for targets and alert sinks).
    pub async fn post_slow(&self, path: &str, body: &Value) -> Result<Value> {
        self.call_timeout(
            reqwest::Method::POST,
            path,
            Some(body),
            Some(std::time::Duration::from_secs(900)),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get_text(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(3600));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        if !resp.status().is_success() {
            let bytes = resp.bytes().await?;
            return match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => Err(p.into()),
                Err(_) => Err(anyhow!("server error: {}", String::from_utf8_lossy(&bytes))),
            };
        }
        Ok(resp)
    }
}

/// Percent-encodes a path segment or query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
