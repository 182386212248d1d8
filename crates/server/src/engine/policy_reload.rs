//! Hot reload of the policy file: a broken file keeps the policy in force and is audited once.

use super::{Engine, event, load_policy_text};
use crate::error::ApiError;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

impl Engine {
    /// Re-reads the policy file. An invalid file keeps the old policy; the failure is audited.
    pub async fn reload_policy(&self) -> Result<bool, ApiError> {
        let current = self.policy();
        let Some(path) = current.path.clone() else {
            return Ok(false);
        };
        let now = self.now();
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", path.display());
                if !self.first_policy_failure(&msg) {
                    return Ok(false);
                }
                tracing::error!(%msg, "policy reload failed; keeping the policy in force");
                self.audit_only(vec![event(
                    now,
                    "policy.reload_failed",
                    Some("system"),
                    None,
                    json!({"path": path.display().to_string(), "error": msg, "kept_sha256": current.sha256}),
                )])
                .await?;
                self.metrics.policy_reload_failures.inc();
                return Ok(false);
            }
        };
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        if sha == current.sha256 {
            self.clear_policy_failure();
            return Ok(false);
        }
        match load_policy_text(&text, Some(path.clone())) {
            Ok(loaded) => {
                self.audit_only(vec![event(
                    now,
                    "policy.loaded",
                    Some("system"),
                    None,
                    json!({"path": path.display().to_string(), "sha256": loaded.sha256, "previous_sha256": current.sha256}),
                )])
                .await?;
                tracing::info!(sha256 = %loaded.sha256, "policy reloaded");
                self.clear_policy_failure();
                if let Ok(mut p) = self.policy.write() {
                    *p = Arc::new(loaded);
                }
                Ok(true)
            }
            Err(err) => {
                if !self.first_policy_failure(&sha) {
                    return Ok(false);
                }
                tracing::error!(%err, "invalid policy file; keeping the policy in force");
                self.audit_only(vec![event(
                    now,
                    "policy.reload_failed",
                    Some("system"),
                    None,
                    json!({"path": path.display().to_string(), "error": err, "sha256": sha, "kept_sha256": current.sha256}),
                )])
                .await?;
                self.metrics.policy_reload_failures.inc();
                Ok(false)
            }
        }
    }

    /// True the first time this failure fingerprint is seen in a row.
    pub(crate) fn first_policy_failure(&self, fingerprint: &str) -> bool {
        match self.last_policy_failure.lock() {
            Ok(last) if last.as_deref() == Some(fingerprint) => false,
            Ok(mut last) => {
                *last = Some(fingerprint.to_string());
                true
            }
            Err(_) => true,
        }
    }

    pub(crate) fn clear_policy_failure(&self) {
        if let Ok(mut last) = self.last_policy_failure.lock() {
            *last = None;
        }
    }
}
