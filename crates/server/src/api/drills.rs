//! Drills: run now (`POST /drills/run`), history (`GET /drills`), per-resource status
//! (`GET /drills/status`), people drills (game days: `POST /drills/people` opens a training
//! window, `POST /drills/people/stop` ends it, `GET /drills/people` lists them). Admins only;
//! each is audited.

use super::{ApiJson, AppState, Auth};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/drills", get(history))
        .route("/drills/run", post(run))
        .route("/drills/status", get(status))
        .route("/drills/people", get(windows).post(open_people))
        .route("/drills/people/stop", post(stop_people))
}

async fn open_people(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<crate::engine::PeopleDrillInput>,
) -> Result<Response, ApiError> {
    Ok(Json(e.open_people_drill(&p, b).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    window: Option<String>,
}

async fn stop_people(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<StopBody>,
) -> Result<Response, ApiError> {
    Ok(Json(e.close_people_drill(&p, b.window.as_deref()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowsQuery {
    limit: Option<u32>,
}

async fn windows(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    q: Result<Query<WindowsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    let list = e.people_drill_windows(&p, q.limit.unwrap_or(50)).await?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    resource: Option<String>,
}

async fn run(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<RunBody>,
) -> Result<Response, ApiError> {
    let list = e
        .run_drills(&p, b.resource.as_deref(), &crate::audit::DrillAuditCheck)
        .await?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    resource: Option<String>,
    limit: Option<u32>,
}

async fn history(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad(r.body_text()))?;
    let list = e
        .drill_history(&p, q.resource.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(list).into_response())
}

async fn status(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    if !e.is_admin(&p) {
        return Err(ApiError::Forbidden("only admins may see drills".into()));
    }
    Ok(Json(e.drill_status().await?).into_response())
}
