//! The UI's actions: cancel, retry and delete a job; cancel or retry every job a filter
//! matches; reset, pause and resume a group.
//!
//! Each one is a POST form carrying the session's CSRF token. It needs the role the API's
//! access table gives the API route it stands for, is audited like that route, and runs
//! that route's handler: the UI adds no behaviour of its own.

use super::pages::{forbidden_form, CsrfForm};
use super::session::Session;
use super::{api_error, message};
use crate::http::access::{self, Access};
use crate::http::error::ApiError;
use crate::http::groups::{self, KnownGroup};
use crate::http::jobs::non_empty;
use crate::http::{audit, bulk, jobs};
use crate::state::SharedState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use jobfleet_api::{BulkFilter, JobId};
use serde::Deserialize;
use std::future::Future;

/// An action as the API names it.
struct Action {
    /// The API route's method.
    method: Method,
    /// The API route's template, as the access table knows it.
    route: &'static str,
    /// The API path acted on (for the audit trail).
    target: String,
}

/// Checks the CSRF `token` and the role, runs `run` and audits the attempt; a refusal is a
/// 403 page, a failure the API error's page.
async fn perform<F>(
    state: &SharedState,
    session: &Session,
    token: Option<String>,
    action: Action,
    run: F,
) -> Response
where
    F: Future<Output = Result<Response, ApiError>>,
{
    if !session.csrf_ok(&state.ui_key, token.as_deref()) {
        return forbidden_form();
    }
    let Access::Needs(needed) = access::required(&action.method, Some(action.route), false) else {
        return message(StatusCode::FORBIDDEN, "Forbidden", "This is no action.");
    };
    let caller = session.caller();
    let audited = access::audited(&action.method, Some(action.route), Access::Needs(needed));
    let label = format!("{} {} (web UI)", action.method, action.route);
    if !session.allows(needed) {
        if audited {
            audit::record(state, &caller, label, action.target, StatusCode::FORBIDDEN).await;
        }
        let text = format!(
            "This needs the {needed} role; you are signed in as {}.",
            session.role
        );
        return message(StatusCode::FORBIDDEN, "Forbidden", &text);
    }
    let (status, response) = match run.await {
        Ok(response) => (StatusCode::OK, response),
        Err(e) => (e.status(), api_error(e)),
    };
    if audited {
        audit::record(state, &caller, label, action.target, status).await;
    }
    response
}

/// The CSRF token a form carries.
fn csrf_of(form: Result<Form<CsrfForm>, FormRejection>) -> Option<String> {
    form.ok().and_then(|Form(form)| form.csrf)
}

/// Cancels a job (submit role), retries it as a new job or deletes its record (admin).
pub async fn job(
    State(state): State<SharedState>,
    session: Session,
    Path((id, verb)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (method, route, target) = match verb.as_str() {
        "cancel" => (
            Method::POST,
            "/v1/jobs/{id}/cancel",
            format!("/v1/jobs/{id}/cancel"),
        ),
        "retry" => (
            Method::POST,
            "/v1/jobs/retry",
            format!("/v1/jobs/retry (ids: {id})"),
        ),
        "delete" => (Method::DELETE, "/v1/jobs/{id}", format!("/v1/jobs/{id}")),
        _ => return message(StatusCode::NOT_FOUND, "Not found", "No such job action."),
    };
    let action = Action {
        method,
        route,
        target,
    };
    let run = async {
        let next = match verb.as_str() {
            "cancel" => cancel(&state, &id).await?,
            "retry" => retry(&state, &id).await?,
            _ => delete(&state, &id).await?,
        };
        Ok(Redirect::to(&next).into_response())
    };
    perform(&state, &session, csrf_of(form), action, run).await
}

/// Cancels job `id`; its page is next.
async fn cancel(state: &SharedState, id: &str) -> Result<String, ApiError> {
    let path = Path(JobId { id: id.to_string() });
    let Json(_canceled) = jobs::cancel(State(state.clone()), path).await?;
    Ok(format!("/ui/jobs/{id}"))
}

/// Resubmits failed or canceled job `id` as a new job; the new job's page is next.
async fn retry(state: &SharedState, id: &str) -> Result<String, ApiError> {
    let filter = BulkFilter {
        ids: Some(vec![id.to_string()]),
        ..BulkFilter::default()
    };
    let Json(result) = bulk::retry(State(state.clone()), Ok(Json(filter))).await?;
    match result.ids.first() {
        Some(new) => Ok(format!("/ui/jobs/{new}")),
        None => Err(ApiError::conflict(format!(
            "job {id:?} was not retried: only failed or canceled jobs not retried before are"
        ))),
    }
}

/// Forgets ended job `id`; the job list is next.
async fn delete(state: &SharedState, id: &str) -> Result<String, ApiError> {
    jobs::delete(State(state.clone()), Path(JobId { id: id.to_string() })).await?;
    Ok("/ui/jobs".to_string())
}

/// Resets, pauses or resumes a group (admin role) and goes back to the overview.
pub async fn group(
    State(state): State<SharedState>,
    session: Session,
    Path((group, verb)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let route = match verb.as_str() {
        "reset" => "/v1/groups/{group}/reset",
        "pause" => "/v1/groups/{group}/pause",
        "resume" => "/v1/groups/{group}/resume",
        _ => return message(StatusCode::NOT_FOUND, "Not found", "No such group action."),
    };
    let action = Action {
        method: Method::POST,
        route,
        target: format!("/v1/groups/{group}/{verb}"),
    };
    let run = async {
        let known = KnownGroup::new(&state, &group)?;
        let Json(_group) = match verb.as_str() {
            "reset" => groups::reset(known).await?,
            "pause" => groups::pause(known).await?,
            _ => groups::resume(known).await?,
        };
        Ok(Redirect::to("/ui").into_response())
    };
    perform(&state, &session, csrf_of(form), action, run).await
}

/// The fields of a bulk action's form: the job list's filter and the CSRF token.
#[derive(Debug, Deserialize)]
pub struct BulkForm {
    /// The session's CSRF token.
    csrf: Option<String>,
    /// Only jobs of this group.
    group: Option<String>,
    /// Only jobs of this function.
    function: Option<String>,
    /// Only jobs of this status.
    status: Option<String>,
}

/// Cancels (queued and started) or retries (failed and canceled) the jobs the job list's
/// filter matches (admin role), through the API's bulk actions; says how many it changed.
pub async fn bulk(
    State(state): State<SharedState>,
    session: Session,
    Path(verb): Path<String>,
    form: Result<Form<BulkForm>, FormRejection>,
) -> Response {
    let route = match verb.as_str() {
        "cancel" => "/v1/jobs/cancel",
        "retry" => "/v1/jobs/retry",
        _ => return message(StatusCode::NOT_FOUND, "Not found", "No such bulk action."),
    };
    let Ok(Form(form)) = form else {
        return forbidden_form();
    };
    let filter = BulkFilter {
        group: non_empty(form.group),
        function: non_empty(form.function),
        status: non_empty(form.status),
        ..BulkFilter::default()
    };
    let action = Action {
        method: Method::POST,
        route,
        target: format!("{route} ({})", serde_json::to_string(&filter).unwrap_or_default()),
    };
    let run = async {
        let Json(result) = if verb == "cancel" {
            bulk::cancel(State(state.clone()), Ok(Json(filter))).await?
        } else {
            bulk::retry(State(state.clone()), Ok(Json(filter))).await?
        };
        let done = if verb == "cancel" {
            "canceled"
        } else {
            "retried as new jobs"
        };
        let mut text = format!("{} of {} matching jobs {done}.", result.changed, result.matched);
        if result.next_cursor.is_some() {
            text.push_str(" More may match: one action handles a bounded number; run it again.");
        }
        Ok(message(StatusCode::OK, "Done", &text))
    };
    perform(&state, &session, form.csrf, action, run).await
}
