//! The one error type of the engine and API. Each variant maps to an HTTP status and a stable
//! RFC 9457 problem `type`; every message says what was wrong and how to fix it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use breakglass_core::policy::Refusal;
use serde::Serialize;
use thiserror::Error;

/// Problem type URIs are `PROBLEM_BASE` + slug; the slugs are a stable contract.
pub const PROBLEM_BASE: &str = "https://breakglass.dev/problems/";

/// The slug of a request that lost a race for the user's MFA state (another node or request
/// used it at the same moment); nothing was done.
pub const MFA_CONFLICT: &str = "mfa-conflict";

/// Retry-After of a 503 sent while the store cannot be reached.
pub const UNAVAILABLE_RETRY_SECS: u64 = 2;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        hint: Option<String>,
    },
    #[error("not logged in or session expired")]
    Unauthenticated,
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{}", .0.message)]
    Refused(Refusal),
    #[error("{message}")]
    Mfa {
        slug: &'static str,
        message: String,
        hint: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    TooLarge,
    /// 429: refused without doing the work; retry after `retry_after_secs` (sent as Retry-After).
    #[error("{message}")]
    TooMany {
        slug: &'static str,
        message: String,
        hint: Option<String>,
        retry_after_secs: u64,
    },
    /// 401 for a non-session bearer token (e.g. the metrics token).
    #[error("{message}")]
    BadToken { message: String, hint: String },
    /// The target system refused or failed; nothing was granted or changed.
    #[error("{0}")]
    Target(String),
    /// 503: the store cannot take the request for now (down, restarting, this node cut off, a
    /// transient lock conflict); nothing was changed and the same request may succeed in a
    /// moment or on another node.
    #[error("the server's store cannot complete requests right now; nothing was changed")]
    Unavailable,
    /// Storage or audit failure: nothing was changed.
    #[error("internal error: {0}; nothing was changed")]
    Internal(String),
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            hint: None,
        }
    }

    pub fn bad_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated
            | ApiError::InvalidCredentials
            | ApiError::BadToken { .. } => StatusCode::UNAUTHORIZED,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::Mfa { slug, .. } if *slug == "mfa-locked" => StatusCode::LOCKED,
            ApiError::Mfa { slug, .. } if *slug == MFA_CONFLICT => StatusCode::CONFLICT,
            ApiError::Mfa { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Target(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem slug.
    pub fn slug(&self) -> String {
        match self {
            ApiError::BadRequest { .. } => "invalid-request".into(),
            ApiError::Unauthenticated | ApiError::BadToken { .. } => "unauthenticated".into(),
            ApiError::TooMany { slug, .. } => (*slug).into(),
            ApiError::InvalidCredentials => "invalid-credentials".into(),
            ApiError::Forbidden(_) => "forbidden".into(),
            ApiError::Refused(r) => format!("policy/{}", r.code.as_str()),
            ApiError::Mfa { slug, .. } => (*slug).into(),
            ApiError::NotFound(_) => "not-found".into(),
            ApiError::Conflict(_) => "conflict".into(),
            ApiError::TooLarge => "too-large".into(),
            ApiError::Target(_) => "target-failed".into(),
            ApiError::Unavailable => "store-unavailable".into(),
            ApiError::Internal(_) => "internal".into(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ApiError::BadRequest { hint, .. }
            | ApiError::Mfa { hint, .. }
            | ApiError::TooMany { hint, .. } => hint.clone(),
            ApiError::BadToken { hint, .. } => Some(hint.clone()),
            ApiError::Refused(r) => r.hint.clone(),
            ApiError::Unauthenticated => Some("run `breakglass login --user NAME`".into()),
            ApiError::TooLarge => Some("request bodies are limited to 64 KiB".into()),
            ApiError::Unavailable => Some(format!(
                "retry in {UNAVAILABLE_RETRY_SECS} s (the same request is safe to repeat), or send it to another breakglass node"
            )),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            r#type: format!("{PROBLEM_BASE}{}", self.slug()),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            hint: self.hint(),
        }
    }
}

impl From<breakglass_store::StoreError> for ApiError {
    fn from(e: breakglass_store::StoreError) -> Self {
        match e {
            breakglass_store::StoreError::Conflict(m) => ApiError::Conflict(format!(
                "{m}: it changed while you were acting on it; check `breakglass status` and retry"
            )),
            breakglass_store::StoreError::MfaConflict(user) => ApiError::Mfa {
                slug: MFA_CONFLICT,
                message: format!(
                    "another request used the MFA of {user} at the same moment; nothing was done"
                ),
                hint: Some("wait for the next code from your authenticator and retry".into()),
            },
            breakglass_store::StoreError::AlreadyExists(m) => {
                ApiError::Conflict(format!("{m} already exists"))
            }
            breakglass_store::StoreError::NotFound(m) => ApiError::NotFound(m),
            breakglass_store::StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                ApiError::Unavailable
            }
            e => {
                tracing::error!(error = %e, "store failure");
                ApiError::Internal("the store could not complete the operation".into())
            }
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Problem {
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        let retry_after = match self {
            ApiError::TooMany {
                retry_after_secs, ..
            } => Some(retry_after_secs.max(1)),
            ApiError::Unavailable => Some(UNAVAILABLE_RETRY_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}
