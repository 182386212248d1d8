//! Post-incident reviews in the browser: the list of open reviews (overdue ones first), and a
//! review's page with the incident report inline (as text: every value escaped, hidden
//! characters shown), its downloads (Markdown, HTML, JSON) and the verdict form, which needs a
//! fresh authenticator code. The engine enforces who may review (not the requester, not an
//! approver) and says why not.

use super::{Nav, St, WebError, WebUser, html, utc};
use crate::error::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/reviews", get(list))
        .route("/reviews/{id}", get(show).post(record))
        .route("/reviews/{id}/report.{ext}", get(download))
}

struct Line {
    grant: String,
    requester: String,
    state: String,
    due: String,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "reviews.html")]
struct List {
    nav: Nav,
    lines: Vec<Line>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

async fn list(State(s): State<St>, u: WebUser) -> Result<Response, WebError> {
    let mut lines: Vec<Line> = s
        .engine
        .reviews(&u.p, true)
        .await?
        .iter()
        .map(|r| Line {
            grant: text(&r["grant"]),
            requester: text(&r["requester"]),
            state: text(&r["state"]),
            due: r["due_at"].as_str().map(utc).unwrap_or_default(),
            overdue: r["overdue"] == true,
        })
        .collect();
    lines.sort_by_key(|l| !l.overdue);
    Ok(html(&List {
        nav: Nav::of(&u),
        lines,
    }))
}

struct Entry {
    reviewer: String,
    verdict: String,
    notes: String,
    at: String,
}

#[derive(Template)]
#[template(path = "review.html")]
struct Page {
    nav: Nav,
    grant: String,
    state: String,
    due: String,
    overdue: bool,
    entries: Vec<Entry>,
    report: String,
    error: Option<(String, String)>,
    notes: String,
}

async fn page(
    s: &St,
    u: &WebUser,
    id: &str,
    error: Option<(String, String)>,
    notes: String,
) -> Result<Response, WebError> {
    let report = s.engine.report(&u.p, id).await?;
    let review = &report["review"];
    let entries = review["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            reviewer: text(&e["reviewer"]),
            verdict: text(&e["verdict"]),
            notes: text(&e["notes"]),
            at: e["at"].as_str().map(utc).unwrap_or_default(),
        })
        .collect();
    Ok(html(&Page {
        nav: Nav::of(u),
        grant: id.to_string(),
        state: text(&review["state"]),
        due: review["due_at"].as_str().map(utc).unwrap_or_default(),
        overdue: review["overdue"] == true,
        entries,
        report: crate::report_render::report_plain(&report),
        error,
        notes,
    }))
}

async fn show(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    page(&s, &u, &id, None, String::new()).await
}

#[derive(Deserialize)]
struct VerdictForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    otp: String,
}

async fn record(
    State(s): State<St>,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<VerdictForm>,
) -> Result<Response, WebError> {
    u.check_form(&f.csrf)?;
    let otp = super::opt(&f.otp);
    match s
        .engine
        .record_review(&u.p, &id, &f.verdict, &f.notes, otp.as_deref())
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/reviews/{}", super::grant::urlencode(&id))).into_response())
        }
        Err(e) => {
            let p = e.problem();
            let status = e.status();
            let mut r = page(
                &s,
                &u,
                &id,
                Some((p.detail, p.hint.unwrap_or_default())),
                f.notes,
            )
            .await?;
            if status.is_client_error() {
                *r.status_mut() = status;
            }
            Ok(r)
        }
    }
}

async fn download(
    State(s): State<St>,
    u: WebUser,
    Path((id, ext)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (kind, body) = match ext.as_str() {
        "md" | "html" | "json" => {
            let r = s.engine.report(&u.p, &id).await?;
            match ext.as_str() {
                "md" => (
                    "text/markdown; charset=utf-8",
                    crate::report_render::report_markdown(&r),
                ),
                "html" => (
                    "text/html; charset=utf-8",
                    crate::report_render::report_html(&r),
                ),
                _ => (
                    "application/json",
                    serde_json::to_string_pretty(&r)
                        .map_err(|e| ApiError::Internal(e.to_string()))?,
                ),
            }
        }
        _ => {
            return Err(WebError::Page {
                status: StatusCode::NOT_FOUND,
                title: "No such report format".into(),
                detail: "Reports come as report.md, report.html or report.json.".into(),
                hint: "Use the download links on the review's page.".into(),
            });
        }
    };
    // The id went through the engine (a grant the user may see), so it is a plain grant id.
    let name: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"incident-{name}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}
