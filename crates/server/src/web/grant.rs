//! A grant's page: its state and exact window in UTC, the credential (shown once: in the answer
//! to the request that activated it, or by a one-time pickup after approvers activated it; a
//! sealed secret is released on request while the grant is active, audited each time), revoke
//! (with a reason) and extend.

use super::{Nav, St, WebError, WebUser, html, opt, utc};
use crate::engine::GrantView;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/grants/{id}", get(show))
        .route("/grants/{id}/revoke", post(revoke))
        .route("/grants/{id}/extend", post(extend))
        .route("/grants/{id}/credential", post(pickup))
        .route("/grants/{id}/secret", post(secret))
}

#[derive(Template)]
#[template(path = "grant.html")]
pub(super) struct GrantPage {
    nav: Nav,
    g: GrantView,
    requested_at: String,
    activated_at: String,
    expires_at: String,
    ended_at: String,
    remaining: String,
    /// Expiry and the server's clock at render time (ms), for the live countdown.
    expires_ms: i64,
    now_ms: i64,
    approvals: Vec<(String, String)>,
    /// Approvals still needed (pending grants).
    approvals_missing: u32,
    timeout_at: String,
    /// The credential, this once: (field, value) pairs.
    credential: Vec<(String, String)>,
    /// What the page says about showing it again.
    credential_note: &'static str,
    pickup_waiting: bool,
    /// The holder may have the sealed secret of this resource released (audited each time).
    secret_release: bool,
    is_owner: bool,
    can_revoke: bool,
    can_approve: bool,
    error: Option<(String, String)>,
}

fn credential_fields(c: &serde_json::Value) -> Vec<(String, String)> {
    match c {
        serde_json::Value::Object(m) => {
            let mut out: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect();
            // An SSH certificate: how to use it (OpenSSH loads KEY-cert.pub beside KEY).
            if let (Some(_), Some(host), Some(user)) = (
                m.get("certificate"),
                m.get("host").and_then(|h| h.as_str()),
                m.get("principals")
                    .and_then(|p| p.get(0))
                    .and_then(|p| p.as_str()),
            ) {
                let port = m.get("port").and_then(|p| p.as_u64()).unwrap_or(22);
                out.insert(
                    0,
                    (
                        "connect".into(),
                        format!(
                            "save the certificate as ~/.ssh/id_ed25519-cert.pub (beside the key you sent), then:\nssh -p {port} {user}@{host}"
                        ),
                    ),
                );
            }
            out
        }
        serde_json::Value::String(s) => vec![("credential".into(), s.clone())],
        serde_json::Value::Null => vec![],
        other => vec![("credential".into(), other.to_string())],
    }
}

/// Renders `g` for `u`, with `error` (an action that failed) on top.
pub(super) async fn render(
    s: &St,
    u: &WebUser,
    g: GrantView,
    error: Option<(String, String)>,
) -> Response {
    let is_owner = g.user == u.p.name;
    let active = g.state == "active";
    let pickup_waiting = is_owner
        && active
        && g.credential.is_none()
        && matches!(s.engine.store.credential(&g.id).await, Ok(Some(c)) if c.pickup.is_some());
    let can_approve =
        g.state == "pending" && u.p.groups.iter().any(|x| g.approvers_from.contains(x));
    let is_secret = s
        .engine
        .policy()
        .set
        .resource(&g.resource)
        .is_some_and(|r| r.kind == breakglass_core::policy::ResourceKind::Secret);
    let t = |x: &Option<String>| x.as_deref().map(utc).unwrap_or_default();
    let page = GrantPage {
        nav: Nav::of(u),
        requested_at: utc(&g.requested_at),
        activated_at: t(&g.activated_at),
        expires_at: t(&g.expires_at),
        ended_at: t(&g.ended_at),
        remaining: g
            .remaining_secs
            .map(|r| breakglass_core::duration::format(std::time::Duration::from_secs(r)))
            .unwrap_or_default(),
        expires_ms: g.expires_at_ms.unwrap_or(0),
        now_ms: s.engine.now().as_millis(),
        approvals: g
            .approvals
            .iter()
            .map(|a| (a.by.clone(), utc(&a.at)))
            .collect(),
        approvals_missing: g
            .approvals_needed
            .unwrap_or(0)
            .saturating_sub(u32::try_from(g.approvals.len()).unwrap_or(u32::MAX)),
        timeout_at: t(&g.approval_timeout_at),
        credential: g
            .credential
            .as_ref()
            .map(credential_fields)
            .unwrap_or_default(),
        credential_note: if is_secret {
            "Released to you under this grant and recorded in the audit trail; it is flagged for rotation when the grant ends."
        } else {
            "Shown this once: copy it now. It is not stored and will not be shown again."
        },
        pickup_waiting,
        secret_release: is_secret && is_owner && active,
        is_owner,
        can_revoke: active && (is_owner || s.engine.is_admin(&u.p)),
        can_approve,
        error,
        g,
    };
    let status = if page.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut r = html(&page);
    *r.status_mut() = status;
    r
}

/// The page of a grant just created (the credential in `view`, if any, is shown this once).
pub(super) async fn page_for(s: &St, u: &WebUser, view: GrantView) -> Response {
    render(s, u, view, None).await
}

/// The page of grant `id` with the error of an action that failed.
pub(super) async fn page_with_error(
    s: &St,
    u: &WebUser,
    id: &str,
    e: crate::error::ApiError,
) -> Result<Response, WebError> {
    let p = e.problem();
    let g = s.engine.grant(&u.p, id).await?;
    let mut r = render(s, u, g, Some((p.detail, p.hint.unwrap_or_default()))).await;
    if e.status().is_client_error() {
        *r.status_mut() = e.status();
    }
    Ok(r)
}

pub(super) fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/grants/{}", urlencode(id))).into_response()
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn show(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let g = s.engine.grant(&u.p, &id).await?;
    Ok(render(&s, &u, g, None).await)
}

#[derive(Deserialize)]
struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s.engine.revoke(&u.p, &id, opt(&f.reason).as_deref()).await {
        Ok(_) => Ok(back_to(&id)),
        Err(e) => page_with_error(&s, &u, &id, e).await,
    }
}

#[derive(Deserialize)]
struct ExtendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    otp: String,
}

async fn extend(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<ExtendForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s
        .engine
        .extend(&u.p, &id, f.by.trim(), opt(&f.otp).as_deref())
        .await
    {
        Ok(_) => Ok(back_to(&id)),
        Err(e) => page_with_error(&s, &u, &id, e).await,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The sealed secret of the grant's resource, released to its holder (audited each time).
async fn secret(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s.engine.secret_show(&u.p, &id).await {
        Ok((value, version)) => {
            let mut g = s.engine.grant(&u.p, &id).await?;
            g.credential = Some(serde_json::json!({"secret": value.as_str(), "version": version}));
            Ok(render(&s, &u, g, None).await)
        }
        Err(e) => page_with_error(&s, &u, &id, e).await,
    }
}

/// The one-time pickup of a credential sealed when approvers activated the grant.
async fn pickup(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s.engine.pickup_credential(&u.p, &id).await {
        Ok(c) => {
            let mut g = s.engine.grant(&u.p, &id).await?;
            g.credential = Some(c);
            Ok(render(&s, &u, g, None).await)
        }
        Err(e) => page_with_error(&s, &u, &id, e).await,
    }
}
