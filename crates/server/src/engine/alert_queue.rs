//! The alert outbox as admins see it: listing and retrying dead-lettered alerts.

use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_store::Change;
use serde_json::json;

impl Engine {
    pub async fn alerts(
        &self,
        who: &Principal,
        state: Option<&str>,
    ) -> Result<Vec<breakglass_store::AlertRow>, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "the alert outbox is for admins (policy `admins`)".into(),
            ));
        }
        if let Some(s) = state
            && !["pending", "delivered", "failed"].contains(&s)
        {
            return Err(ApiError::bad_hint(
                format!("unknown alert state {s:?}"),
                "use pending, delivered or failed",
            ));
        }
        Ok(self.store.alerts(state, 500).await?)
    }

    /// Puts a dead-lettered alert back in the queue.
    pub async fn retry_alert(&self, who: &Principal, id: i64) -> Result<(), ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "retrying alerts is for admins (policy `admins`)".into(),
            ));
        }
        let now = self.now();
        self.commit(
            vec![Change::RetryAlert { id, now }],
            vec![event(
                now,
                "alert.retried",
                Some(&who.name),
                None,
                json!({"alert_id": id}),
            )],
        )
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound(format!(
                "no dead-lettered alert {id}: see `breakglass alerts --state failed`"
            )),
            e => e,
        })?;
        self.alert_wake.notify_one();
        Ok(())
    }
}
