//! One drill, step by step. Each step is timed and recorded; the first failure ends the drill
//! (after revoking whatever it was granted) and is kept with its error and alerted.

use super::super::views::RequestInput;
use super::super::{Engine, Principal, event};
use super::AuditCheck;
use super::target::Held;
use crate::error::ApiError;
use breakglass_connectors::probe::DrillKey;
use breakglass_core::drill::{Step, Timings, Verdict};
use breakglass_core::policy::{DRILL_REASON, DrillSchedule, ResourceKind};
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, DrillRecord};
use rand::RngCore;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How often a drill re-checks what it waits for (revocation, refusal, alert delivery).
const POLL: Duration = Duration::from_millis(250);
/// How long a drill waits for every sink to confirm its alert.
const ALERT_WAIT: Duration = Duration::from_secs(60);

struct Log {
    start: Instant,
    steps: Vec<Value>,
    timings: Timings,
}

type StepResult<T> = Result<T, (Step, String)>;

impl Log {
    fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn ok(&mut self, step: Step, note: impl Into<String>) {
        let ms = self.ms();
        self.steps
            .push(json!({"step": step.as_str(), "ok": true, "at_ms": ms, "note": note.into()}));
    }
    fn fail(&mut self, step: Step, error: &str) {
        let ms = self.ms();
        self.steps
            .push(json!({"step": step.as_str(), "ok": false, "at_ms": ms, "error": error}));
    }
}

fn drill_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("d-{}", hex::encode(b))
}

impl Engine {
    /// Claims and runs one drill of `s`, records its result (audited; a failure is alerted).
    pub(crate) async fn drill(
        &self,
        s: &DrillSchedule,
        trigger: &str,
        slot: Option<Timestamp>,
        by: &str,
        audit: &dyn AuditCheck,
    ) -> Result<DrillRecord, ApiError> {
        let mut rec = DrillRecord {
            id: drill_id(),
            resource: s.resource.clone(),
            trigger: trigger.to_string(),
            slot,
            started_at: self.now(),
            finished_at: None,
            started_by: by.to_string(),
            grant_id: None,
            verdict: "running".into(),
            failed_step: None,
            error: None,
            steps: json!([]),
            timings: json!({}),
        };
        self.start_drill(&rec).await?;
        let mut log = Log {
            start: Instant::now(),
            steps: Vec::new(),
            timings: Timings::default(),
        };
        let mut grant = None;
        let verdict = match self.drill_steps(s, &mut log, &mut grant, audit).await {
            Ok(()) => Verdict::Passed,
            Err((step, error)) => {
                log.fail(step, &error);
                Verdict::Failed { step, error }
            }
        };
        log.timings.total_ms = Some(log.ms());
        let now = self.now();
        rec.finished_at = Some(now);
        rec.grant_id = grant;
        rec.verdict = verdict.as_str().into();
        if let Verdict::Failed { step, error } = &verdict {
            rec.failed_step = Some(step.as_str().into());
            rec.error = Some(error.clone());
        }
        rec.steps = Value::Array(log.steps);
        rec.timings = serde_json::to_value(&log.timings).unwrap_or_default();
        let kind = match verdict {
            Verdict::Passed => "drill.passed",
            Verdict::Failed { .. } => "drill.failed",
        };
        self.commit(
            vec![Change::FinishDrill(rec.clone())],
            vec![event(
                now,
                kind,
                Some("system"),
                None,
                json!({
                    "drill": rec.id, "resource": rec.resource, "grant": rec.grant_id,
                    "step": rec.failed_step, "error": rec.error, "timings": rec.timings,
                    "started_at": rfc3339(rec.started_at),
                }),
            )],
        )
        .await?;
        self.metrics.drill_finished(
            &rec.resource,
            (rec.verdict == "passed").then(|| rec.started_at.unix_secs()),
            log.timings.total_ms.unwrap_or(0),
        );
        Ok(rec)
    }

    async fn drill_steps(
        &self,
        s: &DrillSchedule,
        log: &mut Log,
        grant: &mut Option<String>,
        audit: &dyn AuditCheck,
    ) -> StepResult<()> {
        let policy = self.policy();
        let resource = policy.set.resource(&s.resource).cloned().ok_or((
            Step::Request,
            format!("resource {} is no longer in the policy", s.resource),
        ))?;
        let identity = policy
            .set
            .drills
            .as_ref()
            .map(|d| d.identity.clone())
            .ok_or((Step::Identity, "the policy declares no drills".to_string()))?;
        let who = self
            .drill_principal(&identity)
            .await
            .map_err(|e| (Step::Identity, e.to_string()))?;
        log.ok(Step::Identity, format!("drilling as {}", who.name));

        // Request → policy → MFA → credential.
        let key = match resource.kind {
            ResourceKind::Ssh => Some(
                DrillKey::new(&std::env::temp_dir()).map_err(|e| (Step::Request, e.to_string()))?,
            ),
            _ => None,
        };
        let otp = self
            .drill_code(&who)
            .await
            .map_err(|e| (Step::Mfa, e.to_string()))?;
        let input = RequestInput {
            resource: s.resource.clone(),
            reason: DRILL_REASON.into(),
            ticket: Some(s.ticket.clone()),
            duration: None,
            otp: Some(otp),
            ssh_public_key: key.as_ref().map(|k| k.public_line.clone()),
        };
        let proof = input.otp.clone().map(crate::engine::MfaProof::Totp);
        let view = self
            .request_grant(&who, input, proof, None, true)
            .await
            .map_err(|e| {
                let step = match &e {
                    ApiError::Mfa { .. } => Step::Mfa,
                    ApiError::Target(_) => Step::Credential,
                    _ => Step::Request,
                };
                (step, e.to_string())
            })?;
        *grant = Some(view.id.clone());
        log.ok(
            Step::Request,
            format!("grant {} under policy {}", view.id, view.policy),
        );
        log.ok(Step::Mfa, "the server's code passed the normal MFA check");
        let result = self
            .drill_with_grant(
                s,
                &resource,
                &who,
                &view.id,
                view.state.as_str(),
                view.credential,
                key,
                log,
                audit,
            )
            .await;
        if result.is_err() {
            // Whatever happened, the drill's access ends now.
            let _ = self.revoke(&who, &view.id, Some("drill failed")).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn drill_with_grant(
        &self,
        s: &DrillSchedule,
        resource: &breakglass_core::policy::Resource,
        who: &Principal,
        grant_id: &str,
        state: &str,
        credential: Option<Value>,
        key: Option<DrillKey>,
        log: &mut Log,
        audit: &dyn AuditCheck,
    ) -> StepResult<()> {
        if state != "active" {
            return Err((
                Step::Request,
                format!(
                    "the drill grant is {state}, not active: drills need a policy that approves the drill identity automatically"
                ),
            ));
        }
        if credential.is_none()
            && matches!(resource.kind, ResourceKind::Ssh | ResourceKind::Postgres)
        {
            return Err((Step::Credential, "no credential was handed out".into()));
        }
        log.timings.time_to_glass_ms = Some(log.ms());
        log.ok(
            Step::Credential,
            format!("{} credential issued", resource.kind.as_str()),
        );
        let held = Held {
            kind: resource.kind,
            key,
            credential,
        };
        let used = self
            .drill_use(who, grant_id, &held)
            .await
            .map_err(|e| (Step::Use, e))?;
        log.timings.time_to_first_use_ms = Some(log.ms());
        log.ok(Step::Use, used);

        // Revoke, and wait for the revoker to confirm at the target.
        let revoked_at = Instant::now();
        self.revoke(who, grant_id, Some("drill complete"))
            .await
            .map_err(|e| (Step::Revoke, e.to_string()))?;
        let deadline = revoked_at + s.verify_within;
        loop {
            let rec = self
                .store
                .credential(grant_id)
                .await
                .map_err(|e| (Step::Revoke, e.to_string()))?;
            match rec {
                None => break,
                Some(r) if r.state == "revoked" => break,
                Some(r) if Instant::now() > deadline => {
                    return Err((
                        Step::Revoke,
                        format!(
                            "the target did not confirm revocation within {}: {}",
                            breakglass_core::duration::format(s.verify_within),
                            r.last_error.unwrap_or_else(|| "still pending".into())
                        ),
                    ));
                }
                Some(_) => tokio::time::sleep(POLL).await,
            }
        }
        log.ok(Step::Revoke, "revoked; the target confirmed");

        // The target must now refuse the credential.
        loop {
            let refused = self
                .drill_refused(who, grant_id, resource, &held)
                .await
                .map_err(|e| (Step::Verify, e))?;
            if refused {
                break;
            }
            if Instant::now() > deadline {
                let hint = match resource.kind {
                    ResourceKind::Ssh => {
                        " (the host has not read the new KRL: check its `breakglass ssh krl --out FILE` timer and sshd's RevokedKeys)"
                    }
                    _ => "",
                };
                return Err((
                    Step::Verify,
                    format!(
                        "the target still accepts the revoked credential {} after revocation{hint}",
                        breakglass_core::duration::format(s.verify_within)
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        log.timings.revocation_lag_ms =
            Some(u64::try_from(revoked_at.elapsed().as_millis()).unwrap_or(u64::MAX));
        let recorded = self
            .drill_recording(grant_id, resource)
            .await
            .map_err(|e| (Step::Verify, e))?;
        log.ok(
            Step::Verify,
            match recorded {
                Some(r) => format!("the target refuses the revoked credential; {r}"),
                None => "the target refuses the revoked credential".into(),
            },
        );

        let summary = audit.verify(self).await.map_err(|e| (Step::Audit, e))?;
        log.ok(Step::Audit, summary);

        let note = self
            .drill_alerts_delivered(grant_id)
            .await
            .map_err(|e| (Step::Alerts, e))?;
        log.timings.alert_latency_ms = note.1;
        log.ok(Step::Alerts, note.0);
        Ok(())
    }

    /// Waits until every sink confirmed the drill grant's activation alert; Ok((note, latency)).
    async fn drill_alerts_delivered(
        &self,
        grant_id: &str,
    ) -> Result<(String, Option<u64>), String> {
        let deadline = Instant::now() + ALERT_WAIT;
        loop {
            let rows = self
                .store
                .alerts(None, 500)
                .await
                .map_err(|e| e.to_string())?;
            let mine: Vec<_> = rows
                .iter()
                .filter(|a| a.kind == "grant.activated" && a.doc["grant"]["id"] == grant_id)
                .collect();
            if mine.is_empty() {
                return Ok(("no sink is configured for drill alerts".into(), None));
            }
            let failed: Vec<&str> = mine
                .iter()
                .filter(|a| a.state == "failed")
                .map(|a| a.sink.as_str())
                .collect();
            if !failed.is_empty() {
                return Err(format!("alert dead-lettered at {}", failed.join(", ")));
            }
            if mine.iter().all(|a| a.state == "delivered") {
                let latency = mine
                    .iter()
                    .filter_map(|a| a.delivered_at.map(|d| d.0 - a.created_at.0))
                    .max()
                    .and_then(|ms| u64::try_from(ms).ok());
                let sinks: Vec<&str> = mine.iter().map(|a| a.sink.as_str()).collect();
                return Ok((
                    format!("DRILL alert delivered to {}", sinks.join(", ")),
                    latency,
                ));
            }
            if Instant::now() > deadline {
                let waiting: Vec<String> = mine
                    .iter()
                    .filter(|a| a.state != "delivered")
                    .map(|a| {
                        format!(
                            "{} ({})",
                            a.sink,
                            a.last_error.clone().unwrap_or_else(|| "pending".into())
                        )
                    })
                    .collect();
                return Err(format!("no delivery within 60s to {}", waiting.join(", ")));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
