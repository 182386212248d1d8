//! The security team's dashboard (`/dashboard`, admins only): what is open right now — active
//! grants with their time left and a one-tap revoke (with a reason; the engine ends the access at
//! the target: KRL, role dropped, live sessions cut), pending approvals, revocations still
//! pending at a target, recent anomaly flags, dead-lettered alerts, overdue reviews, drills (the
//! last of each drilled resource, open people drills), sealed glass cases and how long each has
//! left, the audit trail's head and last signed checkpoint, and the policy in force (read-only).

use super::glass::{DrillWindowLine, Row, open_windows};
use super::{Nav, St, WebError, WebUser, html, utc};
use crate::engine::GrantView;
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use breakglass_core::time::rfc3339;

pub(super) fn routes() -> Router<St> {
    Router::new().route("/dashboard", get(show))
}

/// How many of each list the page shows (the rest: the CLI, `--json`).
const SHOWN: usize = 50;

/// An active grant: its line, time left, and what the revoke form needs.
struct Live {
    row: Row,
    left: String,
    flags: String,
}

fn case_line(c: &breakglass_store::GlassCase, now_ms: i64, warn_ms: i64) -> CaseLine {
    let sealed = c.state == "sealed";
    let left_ms = c.expires_at.0 - now_ms;
    let left = match () {
        _ if !sealed => String::new(),
        _ if left_ms <= 0 => "expired".into(),
        _ if left_ms >= 2 * 86_400_000 => format!("{} days left", left_ms / 86_400_000),
        _ if left_ms >= 86_400_000 => "1 day left".into(),
        _ => format!("{} h left", left_ms / 3_600_000),
    };
    CaseLine {
        id: c.id.clone(),
        state: c.state.clone(),
        sealed_by: c.sealed_by.clone(),
        expires: utc(&rfc3339(c.expires_at)),
        left,
        reseal: sealed && left_ms < warn_ms,
        custodians: c.custodians.join(", "),
        threshold: c.threshold as u64,
    }
}

struct Stuck {
    grant: String,
    resource: String,
    attempts: u32,
    error: String,
}

struct DeadAlert {
    id: i64,
    sink: String,
    kind: String,
    grant: String,
    error: String,
    at: String,
}

struct Overdue {
    grant: String,
    requester: String,
    due: String,
}

/// The last drill of a drilled resource (text from targets is escaped by the template).
struct DrillLine {
    resource: String,
    verdict: String,
    when: String,
    step: String,
    error: String,
    last_success: String,
    overdue: bool,
}

/// A glass case the server sealed: until when it covers, and whether it is time to reseal.
struct CaseLine {
    id: String,
    state: String,
    sealed_by: String,
    expires: String,
    /// "13 days left", "expired", or "" once reconciled.
    left: String,
    /// Within the policy's `glass_case.warn_before` of its end (or past it) while sealed.
    reseal: bool,
    custodians: String,
    threshold: u64,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    nav: Nav,
    now: String,
    live: Vec<Live>,
    pending: Vec<Row>,
    stuck: Vec<Stuck>,
    flagged: Vec<(Row, String)>,
    dead: Vec<DeadAlert>,
    overdue: Vec<Overdue>,
    drills: Vec<DrillLine>,
    windows: Vec<DrillWindowLine>,
    cases: Vec<CaseLine>,
    head_seq: u64,
    checkpoint: String,
    policy_sha: String,
    policy_text: String,
}

/// `3725` → `1 h 02 min`; under an hour `12 min 05 s`.
fn left(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        s => format!("{} min {:02} s", s / 60, s % 60),
    }
}

fn flag_text(g: &GrantView) -> String {
    g.flags
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn show(State(s): State<St>, u: WebUser) -> Result<Response, WebError> {
    let e = &s.engine;
    if !e.is_admin(&u.p) {
        return Err(WebError::Page {
            status: StatusCode::FORBIDDEN,
            title: "The dashboard is for the security team".into(),
            detail: format!(
                "{} is not among the policy's admins, who see every grant, alert and review.",
                u.p.name
            ),
            hint: "Your own grants are on the home page; ask an admin if you need this view."
                .into(),
        });
    }
    let now = e.now();
    let active = e.grants(&u.p, true, vec!["active".into()]).await?;
    let live = active
        .iter()
        .take(SHOWN)
        .map(|g| Live {
            row: Row::of(g),
            left: g.remaining_secs.map(left).unwrap_or_default(),
            flags: flag_text(g),
        })
        .collect();
    let pending = e
        .grants(&u.p, true, vec!["pending".into()])
        .await?
        .iter()
        .take(SHOWN)
        .map(Row::of)
        .collect();
    let mut stuck = Vec::new();
    let policy = e.policy();
    for r in &policy.set.resources {
        for c in e
            .store
            .open_credentials(&r.name)
            .await
            .map_err(ApiError::from)?
        {
            if c.state == "revoking" && stuck.len() < SHOWN {
                stuck.push(Stuck {
                    grant: c.grant_id,
                    resource: c.resource,
                    attempts: c.attempts,
                    error: c.last_error.unwrap_or_default(),
                });
            }
        }
    }
    // Flags among the latest grants, newest first (ended grants too: a flag outlives its grant).
    let mut recent = e.grants(&u.p, true, Vec::new()).await?;
    recent.retain(|g| !g.flags.is_empty());
    let flagged = recent
        .iter()
        .take(SHOWN)
        .map(|g| (Row::of(g), flag_text(g)))
        .collect();
    let dead = e
        .alerts(&u.p, Some("failed"))
        .await?
        .into_iter()
        .take(SHOWN)
        .map(|a| DeadAlert {
            id: a.id,
            sink: a.sink,
            kind: a.kind,
            grant: a.doc["grant"]["id"].as_str().unwrap_or("").to_string(),
            error: a.last_error.unwrap_or_default(),
            at: utc(&rfc3339(a.created_at)),
        })
        .collect();
    let overdue = e
        .reviews(&u.p, true)
        .await?
        .into_iter()
        .filter(|r| r["overdue"] == true)
        .take(SHOWN)
        .map(|r| Overdue {
            grant: r["grant"].as_str().unwrap_or("").to_string(),
            requester: r["requester"].as_str().unwrap_or("").to_string(),
            due: r["due_at"].as_str().map(utc).unwrap_or_default(),
        })
        .collect();
    let drills = e
        .drill_status()
        .await?
        .into_iter()
        .map(|d| DrillLine {
            resource: d["resource"].as_str().unwrap_or("").to_string(),
            verdict: d["last"]["verdict"]
                .as_str()
                .unwrap_or("never run")
                .to_string(),
            when: d["last"]["started_at"]
                .as_str()
                .map(utc)
                .unwrap_or_default(),
            step: d["last"]["failed_step"].as_str().unwrap_or("").to_string(),
            error: d["last"]["error"].as_str().unwrap_or("").to_string(),
            last_success: d["last_success"]
                .as_str()
                .map(utc)
                .unwrap_or_else(|| "never".into()),
            overdue: d["overdue"] == true,
        })
        .collect();
    let windows = open_windows(&s).await?;
    let warn_ms = policy.set.glass_case.warn_before.as_millis() as i64;
    let cases = e
        .store
        .glass_cases(SHOWN as u32)
        .await
        .map_err(ApiError::from)?
        .iter()
        .map(|c| case_line(c, now.0, warn_ms))
        .collect();
    let head_seq = e
        .store
        .audit_head()
        .await
        .map_err(ApiError::from)?
        .map(|h| h.seq)
        .unwrap_or(0);
    let checkpoint = match e.store.checkpoints().await.map_err(ApiError::from)?.last() {
        Some(c) => format!("signed at {} events", c.size),
        None => "none signed yet".into(),
    };
    let policy_text = serde_json::to_string_pretty(&policy.set.to_json()).unwrap_or_default();
    Ok(html(&Dashboard {
        nav: Nav::of(&u),
        now: utc(&rfc3339(now)),
        live,
        pending,
        stuck,
        flagged,
        dead,
        overdue,
        drills,
        windows,
        cases,
        head_seq,
        checkpoint,
        policy_sha: policy.sha256.clone(),
        policy_text,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_left_reads_at_a_glance() {
        assert_eq!(super::left(725), "12 min 05 s");
        assert_eq!(super::left(3725), "1 h 02 min");
        assert_eq!(super::left(0), "0 min 00 s");
    }
}
