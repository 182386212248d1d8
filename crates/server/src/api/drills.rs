//! Drills: run now (`POST /drills/run`), history (`GET /drills`), per-resource status
//! (`GET /drills/status`). Admins only; running one is audited like every drill.

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
