//! The server-rendered web UI at `/`: the same engine use cases as the JSON API, in HTML forms
//! that work without JavaScript. One module per page group: [`login`] (sessions), [`glass`]
//! (home, breaking glass), [`grant`] (a grant's page: credential, revoke, extend) and
//! [`approvals`] (the queue, approve, deny), [`account`] (authenticator app, passkeys,
//! recovery codes), [`dashboard`] (the security team's view) and [`reviews`] (post-incident
//! reviews with the report inline).
//!
//! Sessions are the engine's login tokens in a cookie (`__Host-breakglass` over TLS: Secure,
//! Path=/, no Domain; `breakglass` over plain HTTP); HttpOnly, SameSite=Lax. Every
//! state-changing request must come from this origin (`Origin`, or `Sec-Fetch-Site` when there
//! is no `Origin`), and every form of a signed-in page carries a per-session token as well.
//! Every response carries the security headers of [`security_headers`]. Templates (askama, in
//! `crates/server/templates/`) escape every value.

use crate::engine::{Engine, Principal};
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;

mod account;
mod approvals;
mod dashboard;
mod glass;
mod grant;
mod login;
mod reviews;

/// The one style sheet (no inline styles: the CSP forbids them).
const CSS: &str = include_str!("../../templates/app.css");
/// The grant page's live countdown (pages work without it).
const COUNTDOWN_JS: &str = include_str!("../../static/countdown.js");
/// The passkey ceremonies (WebAuthn needs a script; every form also takes a TOTP code).
const PASSKEY_JS: &str = include_str!("../../static/passkey.js");

/// The Content-Security-Policy of every UI response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How the UI is served.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Served over HTTPS: `__Host-` cookie with Secure, HSTS.
    pub tls: bool,
}

pub(crate) struct WebState {
    pub engine: Arc<Engine>,
    pub tls: bool,
    /// Key of the per-session form tokens.
    form_key: zeroize::Zeroizing<[u8; 32]>,
}

pub(crate) type St = Arc<WebState>;

impl WebState {
    pub fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-breakglass"
        } else {
            "breakglass"
        }
    }

    /// The form token of a session: HMAC of its token, never the token itself.
    pub fn form_token(&self, session: &str) -> String {
        use hmac::{Hmac, Mac};
        let Ok(mut m) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.form_key[..]) else {
            return String::new();
        };
        m.update(session.as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }
}

/// The UI's routes (merged beside the API by `start`).
pub fn router(engine: Arc<Engine>, cfg: WebConfig) -> Router {
    let form_key = engine.keys.kek.derive("web form token");
    let state = Arc::new(WebState {
        engine,
        tls: cfg.tls,
        form_key,
    });
    Router::new()
        .route("/static/app.css", get(css))
        .route("/static/countdown.js", get(countdown_js))
        .route("/static/passkey.js", get(passkey_js))
        .merge(login::routes())
        .merge(glass::routes())
        .merge(grant::routes())
        .merge(approvals::routes())
        .merge(dashboard::routes())
        .merge(reviews::routes())
        .merge(account::routes())
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn passkey_js() -> Response {
    script(PASSKEY_JS)
}

async fn countdown_js() -> Response {
    script(COUNTDOWN_JS)
}

fn script(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Refuses cross-origin state changes, then adds the security headers.
async fn guard(State(s): State<St>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let public = s.engine.config.public_url.as_deref();
    let mut resp = if !safe && let Err(why) = same_origin(req.headers(), s.tls, public) {
        tracing::warn!(reason = %why, path = %req.uri().path(), "web: cross-origin request refused");
        error_page(
            StatusCode::FORBIDDEN,
            "Refused: not sent from this site",
            &why,
            "Open breakglass yourself (type its address) and use its own forms. Nothing was changed.",
        )
    } else {
        next.run(req).await
    };
    security_headers(resp.headers_mut(), s.tls);
    resp
}

/// The headers of every UI response.
pub fn security_headers(h: &mut HeaderMap, tls: bool) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(h, "cross-origin-opener-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    if tls {
        set(h, "strict-transport-security", "max-age=31536000");
    }
}

/// Whether a state-changing request comes from this site. Both headers are checked when
/// present: `Origin` must be ours (the scheme we serve and the `Host` asked for, or the
/// configured public URL) and `Sec-Fetch-Site` must say `same-origin` (or `none`: typed by the
/// user). `Origin: null` (what browsers send under `Referrer-Policy: no-referrer`) counts as
/// absent; neither header: refused.
fn same_origin(h: &HeaderMap, tls: bool, public_url: Option<&str>) -> Result<(), String> {
    let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
    let origin = text("origin").filter(|o| *o != "null");
    let site = text("sec-fetch-site");
    if let Some(origin) = origin {
        let scheme = if tls { "https" } else { "http" };
        let ours = text("host").map(|host| format!("{scheme}://{host}"));
        let public = public_url.map(|u| u.trim_end_matches('/'));
        if ours.as_deref() != Some(origin) && public != Some(origin) {
            return Err(format!(
                "This form was sent from {origin:.100}, not from {}.",
                ours.unwrap_or_else(|| "this server".into())
            ));
        }
    }
    match site {
        Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(format!(
            "The browser says this request came from a {other:.40} page."
        )),
        None if origin.is_some() => Ok(()),
        None => Err(
            "The request says neither where it came from (Origin) nor how (Sec-Fetch-Site).".into(),
        ),
    }
}

/// The signed-in user of a page: the session cookie's token, checked by the engine.
pub(crate) struct WebUser {
    pub p: Principal,
    pub token: String,
    /// The per-session form token every form of the page carries.
    pub csrf: String,
}

impl WebUser {
    /// The hash of this session's token: what a passkey ceremony is bound to.
    pub fn session_hash(&self) -> [u8; 32] {
        crate::engine::token_hash(&self.token)
    }

    /// Refuses a form whose token is not this session's.
    pub fn check_form(&self, given: &str) -> Result<(), WebError> {
        use subtle::ConstantTimeEq;
        if !self.csrf.is_empty() && bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(WebError::Page {
                status: StatusCode::FORBIDDEN,
                title: "Refused: stale or foreign form".into(),
                detail: "This form does not belong to your current session.".into(),
                hint: "Reload the page and send the form again. Nothing was changed.".into(),
            })
        }
    }
}

pub(crate) fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<St> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &St) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let token = cookie(&parts.headers, s.cookie_name())
            .ok_or_else(to_login)?
            .to_string();
        match s.engine.authenticate(&token).await {
            Ok(p) => Ok(WebUser {
                p,
                csrf: s.form_token(&token),
                token,
            }),
            Err(ApiError::Unauthenticated) => Err(to_login()),
            Err(e) => Err(WebError::Api(e).into_response()),
        }
    }
}

/// What a page handler fails with: an engine error or a page of its own.
pub(crate) enum WebError {
    Api(ApiError),
    Page {
        status: StatusCode,
        title: String,
        detail: String,
        hint: String,
    },
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError::Api(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Api(e) => {
                if matches!(e, ApiError::Internal(_)) {
                    tracing::error!(error = %e, "web: internal error");
                }
                let p = e.problem();
                error_page(
                    e.status(),
                    &p.title,
                    &p.detail,
                    p.hint.as_deref().unwrap_or(""),
                )
            }
            WebError::Page {
                status,
                title,
                detail,
                hint,
            } => error_page(status, &title, &detail, &hint),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    detail: &'a str,
    hint: &'a str,
}

fn error_page(status: StatusCode, title: &str, detail: &str, hint: &str) -> Response {
    let mut r = html(&ErrorPage {
        title,
        detail,
        hint,
    });
    *r.status_mut() = status;
    r
}

/// A rendered template as `text/html` (a template that fails to render is a 500).
pub(crate) fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response()
        }
    }
}

/// The page header's facts about the signed-in user.
pub(crate) struct Nav {
    pub user: String,
    pub csrf: String,
}

impl Nav {
    pub fn of(u: &WebUser) -> Nav {
        Nav {
            user: u.p.name.clone(),
            csrf: u.csrf.clone(),
        }
    }
}

/// `2026-12-02T03:04:05.000Z` → `2026-12-02 03:04:05 UTC`.
pub(crate) fn utc(rfc3339: &str) -> String {
    let s = rfc3339.trim_end_matches('Z');
    let s = s.split_once('.').map(|x| x.0).unwrap_or(s);
    format!("{} UTC", s.replacen('T', " ", 1))
}

/// The MFA proof a form carries: a passkey answer when the script filled one in, else the
/// authenticator code typed (none when both are empty).
pub(crate) fn proof_of(
    otp: &str,
    ceremony: &str,
    response: &str,
) -> Option<crate::engine::MfaProof> {
    use crate::engine::MfaProof;
    if !ceremony.trim().is_empty() {
        return Some(MfaProof::Passkey {
            ceremony: ceremony.trim().to_string(),
            response: response.to_string(),
        });
    }
    opt(otp).map(MfaProof::Totp)
}

/// An empty form field is absent.
pub(crate) fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_is_exact_to_the_second() {
        assert_eq!(utc("2026-12-02T03:04:05.678Z"), "2026-12-02 03:04:05 UTC");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_rules() {
        let host = ("host", "bg.example:8700");
        let ok = |p: &[(&'static str, &'static str)], tls: bool, public: Option<&str>| {
            same_origin(&headers(p), tls, public).is_ok()
        };
        assert!(ok(
            &[host, ("origin", "http://bg.example:8700")],
            false,
            None
        ));
        assert!(!ok(
            &[host, ("origin", "https://bg.example:8700")],
            false,
            None
        ));
        assert!(ok(
            &[host, ("origin", "https://bg.example:8700")],
            true,
            None
        ));
        assert!(!ok(
            &[host, ("origin", "https://evil.example")],
            false,
            None
        ));
        // Behind a proxy: the public URL's origin.
        assert!(ok(
            &[host, ("origin", "https://bg.corp")],
            false,
            Some("https://bg.corp/")
        ));
        // Origin: null (no-referrer) falls back to Sec-Fetch-Site.
        assert!(ok(
            &[host, ("origin", "null"), ("sec-fetch-site", "same-origin")],
            false,
            None
        ));
        assert!(!ok(&[host, ("origin", "null")], false, None));
        assert!(!ok(
            &[host, ("origin", "null"), ("sec-fetch-site", "cross-site")],
            false,
            None
        ));
        assert!(!ok(&[host, ("sec-fetch-site", "same-site")], false, None));
        assert!(ok(&[host, ("sec-fetch-site", "none")], false, None));
        // A matching Origin does not excuse a cross-site Sec-Fetch-Site.
        assert!(!ok(
            &[
                host,
                ("origin", "http://bg.example:8700"),
                ("sec-fetch-site", "cross-site")
            ],
            false,
            None
        ));
        // Neither header.
        assert!(!ok(&[host], false, None));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("xbreakglass=no; breakglass=yes"),
        );
        assert_eq!(cookie(&h, "breakglass"), Some("yes"));
        assert_eq!(cookie(&h, "__Host-breakglass"), None);
    }
}
