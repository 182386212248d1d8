//! Signing in (user name + password + TOTP code or a recovery code, or a passkey alone → the
//! engine's session token in a cookie) and out (the session is deleted).

use super::{St, WebError, WebUser, html};
use crate::api::PeerIp;
use crate::engine::{MfaProof, looks_like_recovery_code};
use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/login", get(page).post(submit))
        .route("/login/passkey", post(passkey))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    user: &'a str,
    error: Option<(String, String)>,
}

async fn page() -> Response {
    html(&LoginPage {
        user: "",
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    otp: String,
}

async fn submit(State(s): State<St>, PeerIp(ip): PeerIp, Form(f): Form<LoginForm>) -> Response {
    let user = f.user.trim();
    let otp = f.otp.trim();
    let refuse = |status: StatusCode, detail: String, hint: String| {
        let mut r = html(&LoginPage {
            user,
            error: Some((detail, hint)),
        });
        *r.status_mut() = status;
        r
    };
    // A user with no second factor yet signs in with the password alone, to set one up on
    // the account page (nothing else works without MFA); everyone else needs a code.
    let first_factor_only = otp.is_empty() && !has_factor(&s, user).await;
    if otp.is_empty() && !first_factor_only {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Enter the 6-digit code of your authenticator app.".into(),
            "Lost it? Type one of your recovery codes instead, or ask your security team.".into(),
        );
    }
    let proof = if first_factor_only {
        None
    } else if looks_like_recovery_code(otp) {
        Some(MfaProof::Recovery(otp.to_string()))
    } else {
        Some(MfaProof::Totp(otp.to_string()))
    };
    match s
        .engine
        .login_with_proof(user, &f.password, proof, ip)
        .await
    {
        Ok(out) if first_factor_only => {
            let mut r = signed_in(&s, &out.token);
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/account"));
            r
        }
        Ok(out) => signed_in(&s, &out.token),
        Err(e) => {
            let p = e.problem();
            let hint = match &e {
                crate::error::ApiError::Unauthenticated => String::new(),
                _ => p.hint.unwrap_or_default(),
            };
            refuse(e.status(), p.detail, hint)
        }
    }
}

/// Whether `user` has a second factor (an unknown user counts as having one: same answer).
async fn has_factor(s: &St, user: &str) -> bool {
    let store = &s.engine.store;
    if !crate::engine::valid_name(user) || store.user(user).await.ok().flatten().is_none() {
        return true;
    }
    let totp = store
        .mfa(user)
        .await
        .map(|m| m.totp_confirmed)
        .unwrap_or(true);
    let keys = store
        .passkeys(user)
        .await
        .map(|k| !k.is_empty())
        .unwrap_or(true);
    totp || keys
}

/// Home, with the session cookie set.
fn signed_in(s: &St, token: &str) -> Response {
    let secure = if s.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax{secure}; Max-Age={}",
        s.cookie_name(),
        token,
        s.engine.config.session_ttl.as_secs()
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct PasskeyForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    passkey_ceremony: String,
    #[serde(default)]
    passkey_response: String,
}

/// Signs in with a passkey: the script fills in the answer to a `login` challenge.
async fn passkey(State(s): State<St>, PeerIp(ip): PeerIp, Form(f): Form<PasskeyForm>) -> Response {
    let user = f.user.trim();
    match s
        .engine
        .login_passkey(user, f.passkey_ceremony.trim(), &f.passkey_response, ip)
        .await
    {
        Ok(out) => signed_in(&s, &out.token),
        Err(e) => {
            let p = e.problem();
            let mut r = html(&LoginPage {
                user,
                error: Some((p.detail, p.hint.unwrap_or_default())),
            });
            *r.status_mut() = e.status();
            r
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(s): State<St>,
    u: WebUser,
    Form(f): Form<LogoutForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    s.engine.logout(&u.token, &u.p).await?;
    let secure = if s.tls { "; Secure" } else { "" };
    let gone = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax{secure}; Max-Age=0",
        s.cookie_name()
    );
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}
