//! Approvers' queue of pending requests, and approving or denying one on its page, each with a
//! fresh authenticator code for that action. The engine refuses self-approval; the page shows
//! its reason.

use super::glass::Row;
use super::{Nav, St, WebError, WebUser, grant, html, proof_of};
use crate::engine::GrantView;
use crate::engine::Principal;
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/approvals", get(list))
        .route("/grants/{id}/approve", post(approve))
        .route("/grants/{id}/deny", post(deny))
}

/// Pending requests `who` could approve: their groups are among the approvers (their own
/// requests are listed too, marked, so they see them waiting).
pub(super) async fn queue(s: &St, who: &Principal) -> Result<Vec<GrantView>, ApiError> {
    let pending = s
        .engine
        .grants(who, true, vec!["pending".to_string()])
        .await?;
    Ok(pending
        .into_iter()
        .filter(|g| who.groups.iter().any(|x| g.approvers_from.contains(x)))
        .collect())
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct Queue {
    nav: Nav,
    rows: Vec<Row>,
}

async fn list(State(s): State<St>, u: WebUser) -> Result<Response, WebError> {
    let rows = queue(&s, &u.p).await?.iter().map(Row::of).collect();
    Ok(html(&Queue {
        nav: Nav::of(&u),
        rows,
    }))
}

#[derive(Deserialize)]
struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    passkey_ceremony: String,
    #[serde(default)]
    passkey_response: String,
}

async fn approve(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<ApproveForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    let Some(proof) = proof_of(&f.otp, &f.passkey_ceremony, &f.passkey_response) else {
        return grant::page_with_error(
            &s,
            &u,
            &id,
            ApiError::bad(
                "enter a fresh code from your authenticator app (or tap your passkey) to approve",
            ),
        )
        .await;
    };
    match s
        .engine
        .approve_with_proof(&u.p, &id, Some(&proof), Some(u.session_hash()))
        .await
    {
        Ok(_) => Ok(grant::back_to(&id)),
        Err(e) => grant::page_with_error(&s, &u, &id, e).await,
    }
}

#[derive(Deserialize)]
struct DenyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    passkey_ceremony: String,
    #[serde(default)]
    passkey_response: String,
}

async fn deny(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<DenyForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    let Some(proof) = proof_of(&f.otp, &f.passkey_ceremony, &f.passkey_response) else {
        return grant::page_with_error(
            &s,
            &u,
            &id,
            ApiError::bad(
                "enter a fresh code from your authenticator app (or tap your passkey) to deny",
            ),
        )
        .await;
    };
    match s
        .engine
        .deny_with_proof(&u.p, &id, f.reason.trim(), &proof, Some(u.session_hash()))
        .await
    {
        Ok(_) => Ok(grant::back_to(&id)),
        Err(e) => grant::page_with_error(&s, &u, &id, e).await,
    }
}
