//! The UI's pages: sign-in and sign-out, the overview, the job list, a job (and its live
//! events), a workflow, a batch, the schedules and the audit trail. Each one reads through
//! the API's own handlers, so a page shows exactly what the API answers.

use super::session::{clear_cookie, session_of, Session};
use super::{api_error, message, render};
use crate::http::access::{self, Access};
use crate::http::error::ApiError;
use crate::http::{activity, audit, groups, jobs, schedules, workflows};
use crate::state::SharedState;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use jobfleet_api::{AuditQuery, FlowPath, JobId, JobView, ListQuery, LogsQuery};
use jobfleet_common::auth::Role;
use minijinja::{context, Value};
use serde::Deserialize;

/// Jobs per page of the job list.
const PAGE_SIZE: u32 = 50;
/// Audit entries the audit page shows (the newest).
const AUDIT_ENTRIES: u32 = 200;
/// Log lines a job page shows (the newest are in the API's `/logs`).
const LOG_LINES: u32 = 500;

/// What every page's layout needs: who is signed in, what they may do, the CSRF token.
fn viewer(state: &SharedState, session: &Session) -> Value {
    context! {
        name => session.name,
        role => session.role.as_str(),
        open => session.open,
        can_submit => session.allows(Role::Submit),
        can_admin => session.allows(Role::Admin),
        csrf => session.csrf(&state.ui_key),
    }
}

/// The sign-in form (straight to the overview when there is nothing to sign in to).
pub async fn login_form(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if session_of(&state, &headers).is_some() {
        return Redirect::to("/ui").into_response();
    }
    render(StatusCode::OK, "login.html", context! { error => () })
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// An API token.
    #[serde(default)]
    token: String,
}

/// Signs in with an API token: a session cookie for its name and role, or 401.
/// A form posted from another site (an `Origin` that is not this master's) is refused with
/// 403: nobody can sign a visitor in with a token of theirs.
pub async fn login(
    State(state): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(auth) = state.auth.as_ref() else {
        return Redirect::to("/ui").into_response();
    };
    if !same_origin(&headers) {
        return forbidden_form();
    }
    let token = form.ok().map(|Form(form)| form.token).unwrap_or_default();
    let Some(principal) = auth.tokens.authenticate(token.trim()) else {
        let error = "That token is not one this fleet knows.";
        return render(StatusCode::UNAUTHORIZED, "login.html", context! { error });
    };
    let session = Session::start(&state.ui_key, principal, jobfleet_common::now_ms());
    tracing::info!(token = %principal.name, role = %principal.role, "signed in to the web UI");
    let cookie = session.set_cookie(state.config.https.is_some());
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
}

/// Whether a request's `Origin` header, when it has one, names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
}

/// Signs out: the cookie is cleared (a form carrying the session's CSRF token).
pub async fn logout(
    State(state): State<SharedState>,
    session: Session,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let token = form.ok().and_then(|Form(form)| form.csrf);
    if !session.csrf_ok(&state.ui_key, token.as_deref()) {
        return forbidden_form();
    }
    let cookie = clear_cookie(state.config.https.is_some());
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}

/// The 403 page of a form without its session's CSRF token.
pub fn forbidden_form() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "This form is stale or did not come from this page: reload the page and try again.",
    )
}

/// The overview's live part: groups and workers.
async fn fleet(state: &SharedState) -> Result<Value, ApiError> {
    let Json(groups) = groups::list(State(state.clone())).await?;
    let Json(workers) = groups::workers(State(state.clone())).await?;
    Ok(context! { groups => groups.groups, workers => workers.workers })
}

/// `/ui`: the groups and the workers, kept live by the script.
pub async fn overview(State(state): State<SharedState>, session: Session) -> Response {
    overview_in(&state, &session, "overview.html").await
}

/// The overview's live part alone, for the script to swap in.
pub async fn overview_live(State(state): State<SharedState>, session: Session) -> Response {
    overview_in(&state, &session, "overview_live.html").await
}

/// The overview rendered with `template`.
async fn overview_in(state: &SharedState, session: &Session, template: &str) -> Response {
    match fleet(state).await {
        Ok(fleet) => render(
            StatusCode::OK,
            template,
            context! { viewer => viewer(state, session), fleet },
        ),
        Err(e) => api_error(e),
    }
}

/// `/ui/jobs`: newest first, filtered by group, function and status, a page at a time.
pub async fn jobs(
    State(state): State<SharedState>,
    session: Session,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(mut query)) = query else {
        return message(StatusCode::BAD_REQUEST, "Bad Request", "The filter is malformed.");
    };
    query.limit = Some(PAGE_SIZE);
    let filter = context! {
        group => query.group.clone().unwrap_or_default(),
        function => query.function.clone().unwrap_or_default(),
        status => query.status.clone().unwrap_or_default(),
    };
    let Json(page) = match jobs::list(State(state.clone()), Ok(Query(query))).await {
        Ok(page) => page,
        Err(e) => return api_error(e),
    };
    let groups: Vec<&String> = state.config.groups.keys().collect();
    render(
        StatusCode::OK,
        "jobs.html",
        context! {
            viewer => viewer(&state, &session),
            jobs => page.jobs,
            next_cursor => page.next_cursor,
            filter,
            groups,
            statuses => ["queued", "started", "finished", "failed", "canceled"],
        },
    )
}

/// JSON shown on a page: indented.
fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `/ui/jobs/{id}`: the job's record, its log lines and the actions its state allows.
pub async fn job(
    State(state): State<SharedState>,
    session: Session,
    Path(JobId { id }): Path<JobId>,
) -> Response {
    let job: JobView = match jobs::get(State(state.clone()), Path(JobId { id: id.clone() })).await {
        Ok(Json(job)) => job,
        Err(e) => return api_error(e),
    };
    let logs = LogsQuery {
        after: None,
        limit: Some(LOG_LINES),
    };
    let lines = match activity::logs(State(state.clone()), Path(JobId { id }), Ok(Query(logs))).await {
        Ok(Json(logs)) => logs.lines,
        Err(e) => return api_error(e),
    };
    let active = matches!(job.status.as_str(), "queued" | "started");
    let retriable = matches!(job.status.as_str(), "failed" | "canceled");
    render(
        StatusCode::OK,
        "job.html",
        context! {
            viewer => viewer(&state, &session),
            args => pretty(&job.args),
            result => job.result.as_ref().map(pretty),
            job,
            lines,
            active,
            retriable,
        },
    )
}

/// `/ui/jobs/{id}/events`: the API's event stream of a job (status, progress, log lines)
/// for a signed-in page, resuming after `Last-Event-ID` or `?after=`.
pub async fn job_events(
    State(state): State<SharedState>,
    _session: Session,
    Path(JobId { id }): Path<JobId>,
    headers: HeaderMap,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    match activity::events(State(state), Path(JobId { id }), headers, query).await {
        Ok(stream) => stream.into_response(),
        Err(e) => api_error(e),
    }
}

/// `/ui/schedules`: the cron schedules, from the config file and made over the API.
pub async fn schedules(State(state): State<SharedState>, session: Session) -> Response {
    let Json(list) = match schedules::list(State(state.clone())).await {
        Ok(list) => list,
        Err(e) => return api_error(e),
    };
    let rows: Vec<Value> = list
        .schedules
        .iter()
        .map(|s| context! { s, args => s.args.to_string() })
        .collect();
    render(
        StatusCode::OK,
        "schedules.html",
        context! { viewer => viewer(&state, &session), rows },
    )
}

/// `/ui/audit`: the audit trail, newest first, for the role the API's `GET /v1/audit` needs.
pub async fn audit(State(state): State<SharedState>, session: Session) -> Response {
    if let Access::Needs(needed) = access::required(&Method::GET, Some("/v1/audit"), false) {
        if !session.allows(needed) {
            let text = format!(
                "The audit trail needs the {needed} role; you are signed in as {}.",
                session.role
            );
            return message(StatusCode::FORBIDDEN, "Forbidden", &text);
        }
    }
    let query = AuditQuery {
        limit: Some(AUDIT_ENTRIES),
    };
    match audit::list(State(state.clone()), Ok(Query(query))).await {
        Ok(Json(page)) => render(
            StatusCode::OK,
            "audit.html",
            context! { viewer => viewer(&state, &session), entries => page.entries },
        ),
        Err(e) => api_error(e),
    }
}

/// `/ui/workflows/{id}`: the workflow and its steps.
pub async fn workflow(
    State(state): State<SharedState>,
    session: Session,
    Path(FlowPath { id }): Path<FlowPath>,
) -> Response {
    match workflows::get_workflow(State(state.clone()), Path(FlowPath { id })).await {
        Ok(Json(flow)) => render_flow(&state, &session, "workflow.html", flow),
        Err(e) => api_error(e),
    }
}

/// `/ui/batches/{id}`: the batch's counts and its `on_complete` callback.
pub async fn batch(
    State(state): State<SharedState>,
    session: Session,
    Path(FlowPath { id }): Path<FlowPath>,
) -> Response {
    match workflows::get_batch(State(state.clone()), Path(FlowPath { id })).await {
        Ok(Json(flow)) => render_flow(&state, &session, "batch.html", flow),
        Err(e) => api_error(e),
    }
}

/// A workflow's or batch's page: `template` with the flow as `flow`.
fn render_flow(
    state: &SharedState,
    session: &Session,
    template: &str,
    flow: impl serde::Serialize,
) -> Response {
    render(
        StatusCode::OK,
        template,
        context! { viewer => viewer(state, session), flow },
    )
}
