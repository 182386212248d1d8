//! The home page (your grants, the approvals waiting for you) and breaking glass: a form that
//! lists only the resources your policies allow, each with its rules, and shows the engine's
//! refusal on the form itself.

use super::{Nav, St, WebError, WebUser, grant, html, opt, utc};
use crate::engine::{Principal, RequestInput};
use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use breakglass_core::duration;
use breakglass_core::policy::{self, Approval, OnTimeout, PolicySet};
use serde::Deserialize;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/", get(home))
        .route("/request", get(form).post(submit))
}

/// One line of a grant list.
pub(super) struct Row {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub state: String,
    pub when: String,
    pub reason: String,
    /// `DRILL` (a scheduled drill's grant) or `TRAINING` (asked for in a people drill), else "".
    pub mark: &'static str,
}

/// What marks a grant as practice on every page that lists it.
pub(super) fn mark_of(g: &crate::engine::GrantView) -> &'static str {
    if g.drill {
        "DRILL"
    } else if g.training.is_some() {
        "TRAINING"
    } else {
        ""
    }
}

/// An open people-drill window, as the pages announce it.
pub(super) struct DrillWindowLine {
    pub id: String,
    pub until: String,
    /// "every resource", or the names.
    pub resources: String,
    pub opened_by: String,
    pub reason: String,
}

/// The people drills open now (game days): every signed-in page that lets someone break glass
/// says so, since what they ask for on a covered resource is marked training.
pub(super) async fn open_windows(s: &St) -> Result<Vec<DrillWindowLine>, WebError> {
    let now = s.engine.now();
    let open = s
        .engine
        .store
        .open_drill_windows(now)
        .await
        .map_err(crate::error::ApiError::from)?;
    Ok(open
        .into_iter()
        .map(|w| DrillWindowLine {
            id: w.id,
            until: utc(&breakglass_core::time::rfc3339(w.until)),
            resources: if w.resources.is_empty() {
                "every resource".into()
            } else {
                w.resources.join(", ")
            },
            opened_by: w.opened_by,
            reason: w.reason,
        })
        .collect())
}

impl Row {
    pub fn of(g: &crate::engine::GrantView) -> Row {
        let when = match g.state.as_str() {
            "active" => g
                .expires_at
                .as_deref()
                .map(|t| format!("until {}", utc(t)))
                .unwrap_or_default(),
            "pending" => format!(
                "{} of {} approvals",
                g.approvals.len(),
                g.approvals_needed.unwrap_or(0)
            ),
            _ => g
                .ended_at
                .as_deref()
                .map(|t| format!("ended {}", utc(t)))
                .unwrap_or_default(),
        };
        Row {
            id: g.id.clone(),
            user: g.user.clone(),
            resource: g.resource.clone(),
            state: g.state.clone(),
            when,
            reason: g.reason.clone(),
            mark: mark_of(g),
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    nav: Nav,
    rows: Vec<Row>,
    waiting: usize,
    drills: Vec<DrillWindowLine>,
}

async fn home(State(s): State<St>, u: WebUser) -> Result<Response, WebError> {
    let mine = s.engine.grants(&u.p, false, vec![]).await?;
    let waiting = super::approvals::queue(&s, &u.p).await?.len();
    Ok(html(&Home {
        nav: Nav::of(&u),
        rows: mine.iter().take(20).map(Row::of).collect(),
        waiting,
        drills: open_windows(&s).await?,
    }))
}

/// A resource the user may ask for, with the rules of the policy that allows it.
pub(super) struct Choice {
    pub resource: String,
    pub kind: &'static str,
    pub policy: String,
    pub rules: Vec<String>,
    pub checked: bool,
}

/// The resources `who`'s policies allow (approval mode `deny` allows nothing), first policy
/// first, each resource once.
fn choices(set: &PolicySet, who: &Principal, selected: &str) -> Vec<Choice> {
    let mut out: Vec<Choice> = Vec::new();
    for p in &set.policies {
        if !p.who.matches(&who.name, &who.groups) || p.approval == Approval::Deny {
            continue;
        }
        for r in &p.resources {
            if out.iter().any(|c| &c.resource == r) {
                continue;
            }
            let kind = set.resource(r).map(|x| x.kind.as_str()).unwrap_or("?");
            out.push(Choice {
                resource: r.clone(),
                kind,
                policy: p.name.clone(),
                rules: rules(p),
                checked: r == selected,
            });
        }
    }
    if out.len() == 1 {
        out[0].checked = true;
    }
    out
}

fn rules(p: &policy::Policy) -> Vec<String> {
    let mut v = vec![format!(
        "for {} by default, at most {}",
        duration::format(p.duration.default),
        duration::format(p.duration.max)
    )];
    v.push(match &p.approval {
        Approval::Auto => "access at once (reviewed afterwards)".into(),
        Approval::Quorum {
            count,
            from,
            timeout,
            on_timeout,
        } => {
            let mut s = format!(
                "needs {count} approval{} from {}",
                if *count == 1 { "" } else { "s" },
                from.join(", ")
            );
            if let Some(t) = timeout {
                s.push_str(&format!(
                    "; after {} without: {}",
                    duration::format(*t),
                    match on_timeout {
                        OnTimeout::Deny => "denied",
                        OnTimeout::Auto => "access at once",
                    }
                ));
            }
            s
        }
        Approval::Deny => "never granted".into(),
    });
    match &p.require.ticket {
        Some(re) => v.push(format!("ticket matching {}", re.as_str())),
        None => v.push("no ticket needed".into()),
    }
    if p.require.min_reason > 0 {
        v.push(format!(
            "reason of at least {} characters",
            p.require.min_reason
        ));
    }
    if let Some(h) = &p.require.hours {
        v.push(format!("only {}", h.source));
    }
    v.push(if p.require.mfa {
        "authenticator code required".into()
    } else {
        "no authenticator code needed".into()
    });
    v
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    nav: Nav,
    /// The user has a passkey (the form offers a tap beside the code).
    has_passkey: bool,
    choices: Vec<Choice>,
    any_ssh: bool,
    reason: String,
    ticket: String,
    duration: String,
    ssh_key: String,
    error: Option<(String, String)>,
    drills: Vec<DrillWindowLine>,
}

#[derive(Deserialize, Default)]
struct RequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    ssh_public_key: String,
    #[serde(default)]
    passkey_ceremony: String,
    #[serde(default)]
    passkey_response: String,
}

async fn request_page(
    s: &St,
    u: &WebUser,
    f: &RequestForm,
    error: Option<(String, String)>,
) -> Response {
    let has_passkey = s
        .engine
        .passkeys_of(&u.p)
        .await
        .is_ok_and(|k| !k.is_empty());
    let policy = s.engine.policy();
    let choices = choices(&policy.set, &u.p, &f.resource);
    let any_ssh = choices.iter().any(|c| c.kind == "ssh");
    // Informational: whether a request is training is decided by the engine when it arrives.
    let drills = open_windows(s).await.unwrap_or_default();
    html(&RequestPage {
        nav: Nav::of(u),
        has_passkey,
        choices,
        any_ssh,
        reason: f.reason.clone(),
        ticket: f.ticket.clone(),
        duration: f.duration.clone(),
        ssh_key: f.ssh_public_key.clone(),
        error,
        drills,
    })
}

async fn form(State(s): State<St>, u: WebUser) -> Response {
    request_page(&s, &u, &RequestForm::default(), None).await
}

async fn submit(
    State(s): State<St>,
    u: WebUser,
    Form(f): Form<RequestForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    let refuse = async |status: StatusCode, detail: String, hint: String| {
        let mut r = request_page(&s, &u, &f, Some((detail, hint))).await;
        *r.status_mut() = status;
        r
    };
    if f.resource.trim().is_empty() {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "Choose the resource you need.".into(),
            String::new(),
        )
        .await);
    }
    let input = RequestInput {
        resource: f.resource.trim().to_string(),
        reason: f.reason.clone(),
        ticket: opt(&f.ticket),
        duration: opt(&f.duration),
        otp: opt(&f.otp),
        ssh_public_key: opt(&f.ssh_public_key),
    };
    let proof = super::proof_of(&f.otp, &f.passkey_ceremony, &f.passkey_response);
    match s
        .engine
        .request_with_proof(&u.p, input, proof, Some(u.session_hash()))
        .await
    {
        Ok(view) => Ok(grant::page_for(&s, &u, view).await),
        Err(e) => {
            let p = e.problem();
            Ok(refuse(e.status(), p.detail, p.hint.unwrap_or_default()).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values typed by the user come back escaped, in text and in attribute values alike.
    #[test]
    fn the_form_escapes_what_it_shows_again() {
        let evil = "\"><script>alert(1)</script><img src=x onerror=alert(2)>'";
        let page = RequestPage {
            nav: Nav {
                user: "alice".into(),
                csrf: "t".into(),
            },
            has_passkey: true,
            choices: vec![Choice {
                resource: evil.into(),
                kind: "exec",
                policy: evil.into(),
                rules: vec![evil.into()],
                checked: true,
            }],
            any_ssh: true,
            reason: evil.into(),
            ticket: evil.into(),
            duration: evil.into(),
            ssh_key: evil.into(),
            error: Some((evil.into(), evil.into())),
            drills: vec![DrillWindowLine {
                id: "w".into(),
                until: "soon".into(),
                resources: evil.into(),
                opened_by: "sam".into(),
                reason: evil.into(),
            }],
        }
        .render()
        .unwrap();
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "{page}"
        );
        assert!(!page.contains(evil), "{page}");
        // Each of the 12 places shows the escaped text (quotes included: attributes stay shut).
        let escaped = "&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;&#60;img src=x onerror=alert(2)&#62;&#39;";
        assert_eq!(page.matches(escaped).count(), 12, "{page}");
    }
}
