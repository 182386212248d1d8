//! Session recording endpoints: the recorder's (`/recordings…`, authenticated by the grant's
//! token, then by the session's secret) and the viewers' (bearer session; every view audited).

use super::{ApiJson, AppState, Auth, PeerIp};
use crate::engine::RecorderHello;
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use breakglass_core::recording::MAX_CHUNK;
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/recordings", post(start))
        .route(
            "/recordings/{sid}/chunks",
            post(chunk).layer(DefaultBodyLimit::max(MAX_CHUNK)),
        )
        .route("/recordings/{sid}/end", post(end))
        .route("/recordings/{sid}/data", get(data))
        .route("/grants/{id}/recording/view", post(view))
        .route("/grants/{id}/recording/sessions", get(sessions))
}

async fn start(
    State(e): State<AppState>,
    PeerIp(ip): PeerIp,
    ApiJson(hello): ApiJson<RecorderHello>,
) -> Result<Response, ApiError> {
    Ok(Json(e.recorder_start(hello, ip).await?).into_response())
}

/// The session secret from `Authorization: Recorder <secret>`.
fn secret(h: &HeaderMap) -> Result<String, ApiError> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Recorder "))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(|| ApiError::BadToken {
            message: "a recorder request needs `Authorization: Recorder <session secret>`".into(),
            hint: "only `breakglass session` sends these requests".into(),
        })
}

fn number(h: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("{name} must be a non-negative integer"))),
    }
}

async fn chunk(
    State(e): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::bad(r.body_text())
        }
    })?;
    let secret = secret(&headers)?;
    let seq = number(&headers, "x-chunk")?;
    let gap = number(&headers, "x-gap-ms")?;
    let ack = e.recorder_chunk(&sid, &secret, seq, gap, body).await?;
    Ok(Json(ack).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    reason: String,
    #[serde(default)]
    exit_status: Option<i32>,
}

async fn end(
    State(e): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<EndBody>,
) -> Result<Response, ApiError> {
    let secret = secret(&headers)?;
    e.recorder_end(&sid, &secret, &b.reason, b.exit_status)
        .await?;
    Ok(Json(serde_json::json!({"session": sid, "ended": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewBody {
    purpose: String,
}

async fn view(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ViewBody>,
) -> Result<Response, ApiError> {
    Ok(Json(e.open_recording_view(&p, &id, &b.purpose).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewQuery {
    view: String,
    #[serde(default)]
    from: u64,
}

async fn sessions(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(id): Path<String>,
    q: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    Ok(Json(e.recording_sessions_view(&p, &id, &q.view).await?).into_response())
}

async fn data(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    Path(sid): Path<String>,
    q: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    Ok(Json(e.recording_data(&p, &sid, q.from, &q.view).await?).into_response())
}
