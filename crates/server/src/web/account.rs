//! The account page (`/account`): the authenticator app (enrolment with a QR code), passkeys
//! (several, named, removable; adding one needs a fresh code or recovery code) and recovery
//! codes (remaining count; a new set needs a fresh code or passkey tap, and is shown once).
//! Also the passkey challenges the other pages' forms ask for (`/webauthn/challenge`, and
//! `/login/passkey/challenge` before sign-in): JSON for `/static/passkey.js`.

use super::{Nav, St, WebError, WebUser, html, proof_of, utc};
use crate::engine::{CeremonyStart, MfaAction, MfaProof, PasskeyView, looks_like_recovery_code};
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/account", get(page))
        .route("/account/totp", post(totp_enroll))
        .route("/account/totp/confirm", post(totp_confirm))
        .route("/account/passkeys/start", post(passkey_start))
        .route("/account/passkeys/finish", post(passkey_finish))
        .route("/account/passkeys/{id}/remove", post(passkey_remove))
        .route("/account/recovery", post(recovery))
        .route("/webauthn/challenge", post(challenge))
        .route("/login/passkey/challenge", post(login_challenge))
}

/// One passkey line.
struct Key {
    id: String,
    name: String,
    created: String,
    used: String,
}

impl Key {
    fn of(v: PasskeyView) -> Key {
        Key {
            id: v.id,
            name: v.name,
            created: utc(&v.created_at),
            used: v
                .last_used_at
                .as_deref()
                .map(utc)
                .unwrap_or_else(|| "never".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Nav,
    totp_enrolled: bool,
    /// An enrolment in progress: the QR code (SVG) and the secret to type instead.
    enrol: Option<(String, String)>,
    keys: Vec<Key>,
    passkeys_off: String,
    remaining: usize,
    /// A new set of recovery codes, shown once.
    codes: Vec<String>,
    notice: String,
    error: Option<(String, String)>,
}

async fn account(
    s: &St,
    u: &WebUser,
    enrol: Option<(String, String)>,
    codes: Vec<String>,
    notice: &str,
    error: Option<(String, String)>,
) -> Result<Response, WebError> {
    let rec = s
        .engine
        .store
        .mfa(&u.p.name)
        .await
        .map_err(ApiError::from)?;
    let keys = s.engine.passkeys_of(&u.p).await?;
    let passkeys_off = match s.engine.passkeys_available() {
        Ok(()) => String::new(),
        Err(e) => e.problem().detail,
    };
    Ok(html(&AccountPage {
        nav: Nav::of(u),
        totp_enrolled: rec.totp_confirmed,
        enrol,
        keys: keys.into_iter().map(Key::of).collect(),
        passkeys_off,
        remaining: s.engine.recovery_remaining(&u.p).await?,
        codes,
        notice: notice.to_string(),
        error,
    }))
}

async fn with_error(s: &St, u: &WebUser, e: ApiError) -> Result<Response, WebError> {
    let p = e.problem();
    let mut r = account(
        s,
        u,
        None,
        vec![],
        "",
        Some((p.detail, p.hint.unwrap_or_default())),
    )
    .await?;
    if e.status().is_client_error() {
        *r.status_mut() = e.status();
    }
    Ok(r)
}

async fn page(State(s): State<St>, u: WebUser) -> Result<Response, WebError> {
    account(&s, &u, None, vec![], "", None).await
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The QR code of an otpauth URI, as an SVG element (no script, no style attribute).
fn qr_svg(uri: &str) -> Result<String, ApiError> {
    let code =
        qrcode::QrCode::new(uri.as_bytes()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    Ok(svg
        .split_once("<svg")
        .map(|(_, rest)| {
            format!("<svg role=\"img\" aria-label=\"QR code for your authenticator app\"{rest}")
        })
        .unwrap_or_default())
}

async fn totp_enroll(
    State(s): State<St>,
    u: WebUser,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s.engine.totp_enroll(&u.p).await {
        Ok(out) => {
            let svg = qr_svg(&out.otpauth_uri)?;
            account(&s, &u, Some((svg, out.secret_base32)), vec![], "", None).await
        }
        Err(e) => with_error(&s, &u, e).await,
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    otp: String,
}

async fn totp_confirm(
    State(s): State<St>,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s.engine.totp_confirm(&u.p, f.otp.trim()).await {
        Ok(()) => {
            account(
                &s,
                &u,
                None,
                vec![],
                "Your authenticator app is set up.",
                None,
            )
            .await
        }
        Err(e) => with_error(&s, &u, e).await,
    }
}

/// An engine error as JSON for the script (`detail`, `hint`), with its status.
fn json_error(e: ApiError) -> Response {
    let status = e.status();
    let p = e.problem();
    (status, axum::Json(p)).into_response()
}

fn json_start(r: Result<CeremonyStart, ApiError>) -> Response {
    match r {
        Ok(c) => axum::Json(c).into_response(),
        Err(e) => json_error(e),
    }
}

fn json_refusal(status: StatusCode, detail: &str, hint: &str) -> Response {
    let p = serde_json::json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail, "hint": hint});
    (status, axum::Json(p)).into_response()
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    user: String,
}

/// A fresh code for adding a passkey: an authenticator code or a recovery code.
fn code_proof(code: &str) -> Option<MfaProof> {
    let c = code.trim();
    if c.is_empty() {
        None
    } else if looks_like_recovery_code(c) {
        Some(MfaProof::Recovery(c.to_string()))
    } else {
        Some(MfaProof::Totp(c.to_string()))
    }
}

async fn passkey_start(State(s): State<St>, u: WebUser, Form(f): Form<StartForm>) -> Response {
    if u.check_form(&f.csrf).is_err() {
        return json_refusal(
            StatusCode::FORBIDDEN,
            "This form does not belong to your current session.",
            "Reload the page.",
        );
    }
    let proof = code_proof(&f.otp);
    if proof.is_none() {
        return json_refusal(
            StatusCode::BAD_REQUEST,
            "Adding a passkey needs a fresh code from your authenticator app (or a recovery code).",
            "Type the code, then tap Add passkey.",
        );
    }
    json_start(
        s.engine
            .passkey_register_start(&u.p, u.session_hash(), &f.name, proof.as_ref())
            .await,
    )
}

#[derive(Deserialize)]
struct FinishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    passkey_ceremony: String,
    #[serde(default)]
    passkey_response: String,
}

async fn passkey_finish(
    State(s): State<St>,
    u: WebUser,
    Form(f): Form<FinishForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s
        .engine
        .passkey_register_finish(
            &u.p,
            u.session_hash(),
            &f.passkey_ceremony,
            &f.passkey_response,
        )
        .await
    {
        Ok(v) => {
            let msg = format!("Passkey \u{201c}{}\u{201d} added.", v.name);
            account(&s, &u, None, vec![], &msg, None).await
        }
        Err(e) => with_error(&s, &u, e).await,
    }
}

async fn passkey_remove(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    match s.engine.passkey_remove(&u.p, &id).await {
        Ok(()) => Ok(Redirect::to("/account").into_response()),
        Err(e) => with_error(&s, &u, e).await,
    }
}

#[derive(Deserialize)]
struct ProofForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    passkey_ceremony: String,
    #[serde(default)]
    passkey_response: String,
}

async fn recovery(
    State(s): State<St>,
    u: WebUser,
    Form(f): Form<ProofForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    let proof = proof_of(&f.otp, &f.passkey_ceremony, &f.passkey_response);
    if proof.is_none() {
        return with_error(
            &s,
            &u,
            ApiError::bad(
                "new recovery codes need a fresh code from your authenticator app or a passkey tap",
            ),
        )
        .await;
    }
    match s
        .engine
        .recovery_regenerate(&u.p, proof.as_ref(), Some(u.session_hash()))
        .await
    {
        Ok(codes) => {
            let shown = codes.iter().map(|c| c.to_string()).collect();
            account(&s, &u, None, shown, "", None).await
        }
        Err(e) => with_error(&s, &u, e).await,
    }
}

/// A passkey challenge for an action of the signed-in user (bound to their session).
async fn challenge(State(s): State<St>, u: WebUser, Form(f): Form<StartForm>) -> Response {
    if u.check_form(&f.csrf).is_err() {
        return json_refusal(
            StatusCode::FORBIDDEN,
            "This form does not belong to your current session.",
            "Reload the page.",
        );
    }
    let action = MfaAction::new(f.purpose.trim(), f.subject.trim(), Some(u.session_hash()));
    if action.purpose == "login" {
        return json_refusal(StatusCode::BAD_REQUEST, "You are signed in already.", "");
    }
    json_start(s.engine.passkey_challenge(&u.p.name, &action).await)
}

/// A passkey challenge to sign in as `user`.
async fn login_challenge(State(s): State<St>, Form(f): Form<StartForm>) -> Response {
    let user = f.user.trim();
    if !crate::engine::valid_name(user) {
        return json_refusal(StatusCode::BAD_REQUEST, "Type your user name first.", "");
    }
    let action = MfaAction::new("login", user, None);
    json_start(s.engine.passkey_challenge(user, &action).await)
}
