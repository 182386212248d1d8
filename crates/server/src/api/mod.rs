//! The HTTP JSON API under `/api/v1`, plus `/healthz` and `/metrics`. Handlers are thin: they
//! authenticate, parse, call the [`Engine`], and render. Errors are RFC 9457 problem+json.

use crate::engine::{Engine, Principal, RequestInput};
use crate::error::ApiError;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

mod drills;
mod glass_case;
mod recordings;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The OpenAPI document (committed; a test checks it lists every route).
pub const OPENAPI: &str = include_str!("../../openapi.json");

type AppState = Arc<Engine>;

/// JSON body extractor whose rejections are problem+json with a useful message.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(ApiError::TooLarge);
                }
                Err(ApiError::bad_hint(
                    rej.body_text(),
                    "send a JSON object with the documented fields (see /api/v1/openapi.json)",
                ))
            }
        }
    }
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Principal, pub String);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        let p = state.authenticate(&token).await?;
        Ok(Auth(p, token))
    }
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v.strip_prefix("Bearer ")?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Who may read `/metrics`.
#[derive(Clone)]
pub enum MetricsAccess {
    /// Anyone who can reach the listener (the default).
    Public,
    /// Only with `Authorization: Bearer <token>`; the SHA-256 of the token is kept.
    Token(Arc<[u8; 32]>),
}

impl MetricsAccess {
    /// The token in `path` (surrounding whitespace ignored; at least 16 characters).
    pub fn token_from_file(path: &std::path::Path) -> Result<MetricsAccess, String> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the metrics token file {}: {e}\ncreate it, e.g. `openssl rand -hex 32 > {}`",
                path.display(),
                path.display()
            )
        })?);
        let token = text.trim();
        if token.len() < 16 {
            return Err(format!(
                "the metrics token in {} is shorter than 16 characters\nput a long random token in it, e.g. `openssl rand -hex 32 > {}`",
                path.display(),
                path.display()
            ));
        }
        Ok(MetricsAccess::Token(Arc::new(
            Sha256::digest(token.as_bytes()).into(),
        )))
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq;
        let MetricsAccess::Token(want) = self else {
            return Ok(());
        };
        let hint = "send `Authorization: Bearer <token>` with the token in the server's --metrics-token-file".to_string();
        let Some(given) = bearer(headers) else {
            return Err(ApiError::BadToken {
                message: "/metrics needs a bearer token".into(),
                hint,
            });
        };
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(given.ct_eq(want.as_ref())) {
            Ok(())
        } else {
            Err(ApiError::BadToken {
                message: "wrong metrics token".into(),
                hint,
            })
        }
    }
}

/// The API with a public `/metrics`.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, Some(MetricsAccess::Public))
}

/// Only `/metrics` (for `serve --metrics-listen`).
pub fn metrics_router(engine: Arc<Engine>, access: MetricsAccess) -> Router {
    Router::new()
        .route("/metrics", metrics_route(access))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(engine)
}

fn metrics_route(access: MetricsAccess) -> axum::routing::MethodRouter<AppState> {
    get(move |State(e): State<AppState>, headers: HeaderMap| {
        let access = access.clone();
        async move {
            access.check(&headers)?;
            Ok::<_, ApiError>(metrics(e).await)
        }
    })
}

/// The API; `/metrics` with `metrics` access, or not at all (served on another listener).
pub fn router_with(engine: Arc<Engine>, metrics: Option<MetricsAccess>) -> Router {
    let api = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/mfa/totp/enroll", post(totp_enroll))
        .route("/mfa/totp/confirm", post(totp_confirm))
        .route("/grants", get(list_grants).post(request))
        .route("/grants/{id}", get(get_grant))
        .route("/grants/{id}/approve", post(approve))
        .route("/grants/{id}/deny", post(deny))
        .route("/grants/{id}/revoke", post(revoke))
        .route("/grants/{id}/extend", post(extend))
        .route("/policy", get(policy))
        .route("/reviews", get(list_reviews))
        .route("/reports/summary", get(summary))
        .route("/grants/{id}/review", post(record_review))
        .route("/grants/{id}/report", get(report))
        .route("/secrets", get(list_secrets))
        .route("/secrets/{resource}", post(put_secret))
        .route("/grants/{id}/secret", get(show_secret))
        .route("/grants/{id}/credential", post(pickup_credential))
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}/retry", post(retry_alert))
        .route("/audit/export", get(audit_export))
        .route("/audit/checkpoint", get(audit_checkpoint))
        .route("/audit/streams", get(audit_streams))
        .route("/ssh/ca-key", get(ssh_ca_key))
        .route("/ssh/krl", get(ssh_krl))
        .route("/openapi.json", get(openapi))
        .merge(recordings::routes())
        .merge(drills::routes())
        .merge(glass_case::routes());
    let mut root = Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz));
    if let Some(access) = metrics {
        root = root.route("/metrics", metrics_route(access));
    }
    root.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(engine)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint: see /api/v1/openapi.json".into())
}

async fn method_not_allowed() -> Response {
    let mut r = ApiError::bad("method not allowed on this endpoint").into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
    #[serde(default)]
    otp: Option<String>,
}

/// The client's address: the TCP peer (X-Forwarded-For only from `serve --trust-proxy`
/// addresses, see [`crate::net::client_ip`]). In-process callers without a connection (tests)
/// count as one unspecified source.
pub struct PeerIp(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(crate::net::client_ip(parts).unwrap_or(
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        )))
    }
}

async fn login(
    State(e): State<AppState>,
    PeerIp(ip): PeerIp,
    ApiJson(b): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let out = e.login(&b.user, &b.password, b.otp.as_deref(), ip).await?;
    Ok(Json(out).into_response())
}

async fn logout(State(e): State<AppState>, Auth(p, token): Auth) -> Result<StatusCode, ApiError> {
    e.logout(&token, &p).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    let mfa = e.store.mfa(&p.name).await?;
    Ok(Json(json!({
        "user": p.name, "groups": p.groups, "admin": e.is_admin(&p),
        "totp_enrolled": mfa.totp_confirmed,
    }))
    .into_response())
}

async fn totp_enroll(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    Ok(Json(e.totp_enroll(&p).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

async fn totp_confirm(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<CodeBody>,
) -> Result<Response, ApiError> {
    e.totp_confirm(&p, &b.code).await?;
    Ok(Json(json!({"user": p.name, "totp_enrolled": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    state: Option<String>,
}

async fn list_grants(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    let states = q
        .state
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(e.grants(&p, q.all, states).await?).into_response())
}

async fn request(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<RequestInput>,
) -> Result<Response, ApiError> {
    let g = e.request(&p, b).await?;
    Ok((StatusCode::CREATED, Json(g)).into_response())
}

async fn get_grant(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(e.grant(&p, &id).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OtpBody {
    #[serde(default)]
    otp: Option<String>,
}

async fn approve(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<OtpBody>,
) -> Result<Response, ApiError> {
    Ok(Json(e.approve(&p, &id, b.otp.as_deref()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn deny(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(e.deny(&p, &id, b.reason.as_deref().unwrap_or("")).await?).into_response())
}

async fn revoke(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(e.revoke(&p, &id, b.reason.as_deref()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    by: String,
    #[serde(default)]
    otp: Option<String>,
}

async fn extend(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ExtendBody>,
) -> Result<Response, ApiError> {
    Ok(Json(e.extend(&p, &id, &b.by, b.otp.as_deref()).await?).into_response())
}

async fn policy(State(e): State<AppState>, Auth(_, _): Auth) -> Result<Response, ApiError> {
    let p = e.policy();
    Ok(Json(json!({"sha256": p.sha256, "policy": p.set.to_json()})).into_response())
}

async fn audit_export(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    if !e.is_admin(&p) {
        return Err(ApiError::Forbidden(
            "exporting the audit trail is for admins (policy `admins`)".into(),
        ));
    }
    let body = crate::audit::export_body(e.clone());
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// The SSH CA's public line for sshd's TrustedUserCAKeys (public: hosts fetch it unauthenticated).
async fn ssh_ca_key(State(e): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", e.keys.ssh_ca.public_line()),
    )
        .into_response()
}

/// The OpenSSH KRL for sshd's RevokedKeys (public: it lists serials only).
async fn ssh_krl(State(e): State<AppState>) -> Result<Response, ApiError> {
    let krl = e.ssh_krl().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        krl,
    )
        .into_response())
}

async fn audit_checkpoint(
    State(e): State<AppState>,
    Auth(_, _): Auth,
) -> Result<Response, ApiError> {
    let cps = e.store.checkpoints().await?;
    let head = e.store.audit_head().await?;
    Ok(Json(json!({
        "origin": e.keys.origin,
        "public_key_pem": breakglass_core::audit::public_key_pem(&e.keys.audit_public()),
        "head_seq": head.map(|h| h.seq).unwrap_or(0),
        "checkpoint": cps.last().map(|c| json!({"size": c.size, "note": c.note})),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewQuery {
    #[serde(default)]
    all: bool,
}

async fn list_reviews(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    q: Result<Query<ReviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    Ok(Json(e.reviews(&p, !q.all).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    verdict: String,
    notes: String,
    #[serde(default)]
    otp: Option<String>,
}

async fn record_review(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReviewBody>,
) -> Result<Response, ApiError> {
    Ok(Json(
        e.record_review(&p, &id, &b.verdict, &b.notes, b.otp.as_deref())
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    since: String,
}

async fn summary(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    q: Result<Query<SummaryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad_hint(r.body_text(), "pass since=YYYY-MM-DD"))?;
    Ok(Json(e.summary(&p, &q.since).await?).into_response())
}

async fn report(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(e.report(&p, &id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    #[serde(default)]
    state: Option<String>,
}

async fn list_alerts(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    q: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    let rows = e.alerts(&p, q.state.as_deref()).await?;
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "sink": a.sink, "kind": a.kind, "state": a.state, "attempts": a.attempts,
                "dedup_key": a.dedup_key, "created_at": breakglass_core::time::rfc3339(a.created_at),
                "next_attempt_at": (a.state == "pending").then(|| breakglass_core::time::rfc3339(a.next_attempt_at)),
                "delivered_at": a.delivered_at.map(breakglass_core::time::rfc3339),
                "last_error": a.last_error, "grant": a.doc["grant"]["id"],
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn retry_alert(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_hint(
            format!("alert id {id:.40} is not a number"),
            "see `breakglass alerts`",
        )
    })?;
    e.retry_alert(&p, id).await?;
    Ok(Json(json!({"id": id, "state": "pending"})).into_response())
}

async fn list_secrets(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    Ok(Json(e.secrets_list(&p).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

async fn put_secret(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(resource): Path<String>,
    ApiJson(b): ApiJson<SecretBody>,
) -> Result<Response, ApiError> {
    let value = zeroize::Zeroizing::new(b.value);
    Ok(Json(e.secret_put(&p, &resource, &value).await?).into_response())
}

async fn show_secret(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (value, version) = e.secret_show(&p, &id).await?;
    let body = zeroize::Zeroizing::new(
        serde_json::to_vec(&json!({"grant": id, "version": version, "secret": value.as_str()}))
            .unwrap_or_default(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_vec(),
    )
        .into_response())
}

/// The credential of an approver-activated grant, once, to its holder.
async fn pickup_credential(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let credential = e.pickup_credential(&p, &id).await?;
    let body = zeroize::Zeroizing::new(
        serde_json::to_vec(&json!({"grant": id, "credential": credential})).unwrap_or_default(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_vec(),
    )
        .into_response())
}

async fn audit_streams(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    Ok(Json(e.audit_streams(&p).await?).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz(State(e): State<AppState>) -> Response {
    match e.store.audit_head().await {
        Ok(_) => Json(json!({"status": "ok", "store": e.store.backend()})).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn metrics(e: AppState) -> Response {
    let active = e.store.count_grants("active").await.ok();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        e.metrics.render(active),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, SystemClock, load_policy_text};
    use crate::keys::{Kek, Keys};
    use axum::body::Body;
    use tower::ServiceExt;

    async fn app() -> Router {
        let store = breakglass_store::sqlite::SqliteStore::memory()
            .await
            .unwrap();
        let keys = Keys {
            kek: Kek::generate(),
            audit_signing: ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            origin: "breakglass/test".into(),
            ssh_ca: Arc::new(breakglass_connectors::ssh::Ca::from_seed(&[2; 32])),
        };
        let policy =
            load_policy_text(include_str!("../../../../examples/demo-policy.yaml"), None).unwrap();
        router(Arc::new(Engine::new(
            Arc::new(store),
            keys,
            policy,
            Arc::new(SystemClock),
            EngineConfig::default(),
        )))
    }

    /// Every operation in the committed OpenAPI document is served (never the 404/405 fallback).
    #[tokio::test]
    async fn openapi_document_matches_the_router() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 15);
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                let uri = path.replace("{id}", "g-0000");
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap();
                let resp = app().await.oneshot(req).await.unwrap();
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&body);
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED && !text.contains("no such endpoint"),
                    "{method} {path} is documented but not routed ({status}: {text})"
                );
            }
        }
        // And an undocumented path is the fallback.
        let resp = app()
            .await
            .oneshot(
                Request::builder()
                    .uri("/api/v1/nope")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
