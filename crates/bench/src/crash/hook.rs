//! The webhook receiver the server's alerts go to: an HTTP listener on loopback that checks
//! each delivery's HMAC signature, refuses some deliveries on purpose (so retries and backoff
//! run), answers after a short random delay (so a kill can fall between "received" and "the
//! server recorded it as delivered"), and records each alert once by its dedup key.

use super::rng::Rng;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SECRET: &str = "crash-trials-hook-secret-0123456789";

#[derive(Debug, Default, Clone, Copy)]
pub struct HookStats {
    /// Deliveries answered 200 (duplicates included).
    pub accepted: u64,
    /// Deliveries of an alert already received (at-least-once: expected after some kills).
    pub duplicates: u64,
    /// Deliveries refused with 500 on purpose.
    pub refused: u64,
    pub bad_signatures: u64,
}

struct Inner {
    rng: Rng,
    by_key: HashMap<String, Value>,
    stats: HookStats,
}

pub struct Hook {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

const FAIL_RATE: f64 = 0.1;

impl Hook {
    pub async fn start(rng: Rng) -> anyhow::Result<Hook> {
        let inner = Arc::new(Mutex::new(Inner {
            rng,
            by_key: HashMap::new(),
            stats: HookStats::default(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Hook { url, inner })
    }

    /// Every alert received so far, by dedup key (the first delivery's document).
    pub fn received(&self) -> HashMap<String, Value> {
        self.inner
            .lock()
            .map(|i| i.by_key.clone())
            .unwrap_or_default()
    }

    pub fn has(&self, key: &str) -> bool {
        self.inner
            .lock()
            .map(|i| i.by_key.contains_key(key))
            .unwrap_or(false)
    }

    pub fn stats(&self) -> HookStats {
        self.inner.lock().map(|i| i.stats).unwrap_or_default()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let ts: i64 = h("x-breakglass-timestamp").parse().unwrap_or(0);
    let good = h("x-breakglass-signature")
        == breakglass_server::alerts::signature(SECRET.as_bytes(), ts, &body);
    let key = h("x-breakglass-dedup-key");
    let delay = {
        let Ok(mut i) = inner.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        if !good || key.is_empty() {
            i.stats.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        if i.rng.chance(FAIL_RATE) {
            i.stats.refused += 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        i.stats.accepted += 1;
        match i.by_key.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => i.stats.duplicates += 1,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(doc);
            }
        }
        Duration::from_millis(i.rng.below(40))
    };
    // Received and recorded; the answer comes a little later.
    tokio::time::sleep(delay).await;
    StatusCode::OK
}
