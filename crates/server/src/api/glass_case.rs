//! The offline glass case (admins): seal, reconcile, list. See `engine/glass_case/`.

use super::{ApiJson, AppState, Auth};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

/// Journals of many openings fit; a hostile body does not get further than this.
const MAX_RECONCILE_BODY: usize = 4 * 1024 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/glass-cases", get(list))
        .route("/glass-case/seal", post(seal))
        .route(
            "/glass-case/reconcile",
            post(reconcile).layer(DefaultBodyLimit::max(MAX_RECONCILE_BODY)),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealBody {
    custodians: Vec<String>,
    threshold: u32,
    days: u32,
    otp: Option<String>,
}

async fn seal(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<SealBody>,
) -> Result<Response, ApiError> {
    // The payload holds the case's key and secrets: never cached.
    let v = e
        .glass_case_seal(&p, &b.custodians, b.threshold, b.days, b.otp.as_deref())
        .await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    journals: Vec<String>,
    /// Seal a new case for the same custodians and threshold, covering this many days.
    reseal_days: Option<u32>,
    otp: Option<String>,
}

async fn reconcile(
    State(e): State<AppState>,
    Auth(p, _): Auth,
    ApiJson(b): ApiJson<ReconcileBody>,
) -> Result<Response, ApiError> {
    let v = e
        .glass_case_reconcile(&p, &b.journals, b.reseal_days, b.otp.as_deref())
        .await?;
    // With a reseal, the answer holds the new case's key and secrets: never cached.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response())
}

async fn list(State(e): State<AppState>, Auth(p, _): Auth) -> Result<Response, ApiError> {
    Ok(Json(e.glass_cases(&p).await?).into_response())
}
