//! What the checks read from the running server, as an admin over its HTTP API: single grant
//! views (with the target credential's status), the whole audit trail (`/audit/export`) and
//! the alert outbox. No connection is reused across a kill.

use super::load::token;
use super::rig::ADMIN;
use anyhow::{Result, bail};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One audit event from the export.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq: u64,
    pub kind: String,
    pub grant: Option<String>,
    pub ts: i64,
    pub data: Value,
}

pub struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    pub fn new(base: &str) -> Result<Admin> {
        Ok(Admin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(0)
                .build()?,
            base: base.to_string(),
        })
    }

    /// GET as the auditor; a connection that fails is tried again for up to 30 s (the server
    /// was just started).
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = self
                .http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token(ADMIN))
                .send()
                .await;
            match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    return Ok((status, r.bytes().await?.to_vec()));
                }
                Err(e) if Instant::now() >= deadline => bail!("GET {path}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The grant as the server reports it (`None`: it has no such grant).
    pub async fn grant(&self, id: &str) -> Result<Option<Value>> {
        let (status, body) = self.get(&format!("/api/v1/grants/{id}")).await?;
        match status {
            200 => Ok(Some(serde_json::from_slice(&body)?)),
            404 => Ok(None),
            s => bail!("GET grant {id}: {s} {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Every audit event, in order.
    pub async fn events(&self) -> Result<Vec<Event>> {
        let (status, body) = self.get("/api/v1/audit/export").await?;
        if status != 200 {
            bail!("audit export: {status}");
        }
        let text = String::from_utf8_lossy(&body);
        let mut out = Vec::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)?;
            if v["type"] != "event" {
                continue;
            }
            let e = &v["event"];
            out.push(Event {
                seq: e["seq"].as_u64().unwrap_or(0),
                kind: e["kind"].as_str().unwrap_or("").to_string(),
                grant: e["grant"].as_str().map(String::from),
                ts: e["ts"].as_i64().unwrap_or(0),
                data: e["data"].clone(),
            });
        }
        Ok(out)
    }

    /// The outbox in one state, newest first (the server lists at most 500).
    pub async fn alerts(&self, state: &str) -> Result<Vec<Value>> {
        let (status, body) = self.get(&format!("/api/v1/alerts?state={state}")).await?;
        if status != 200 {
            bail!("alerts: {status}");
        }
        let v: Value = serde_json::from_slice(&body)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}
