//! The HTTP API of SPEC §4: the router, its handlers, errors and the OpenAPI document.

pub mod access;
pub mod activity;
pub mod audit;
pub mod backend;
pub mod batch;
pub mod bulk;
pub mod error;
pub mod groups;
pub mod jobs;
pub mod openapi;
pub mod schedules;
pub mod submission;
pub mod submit;
pub mod system;
pub mod views;
pub mod workflows;

use crate::state::SharedState;
use access::BearerAuth;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use axum::Router;
use error::ApiError;
use jobfleet_common::config::Config;
use utoipa::OpenApi;

/// The OpenAPI description, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jobfleet master",
        description = "Submit jobs, follow them, and watch the fleet."
    ),
    paths(
        submit::submit,
        batch::submit,
        jobs::get,
        jobs::list,
        jobs::cancel,
        jobs::delete,
        activity::logs,
        activity::events,
        bulk::cancel,
        bulk::retry,
        groups::list,
        groups::get,
        groups::reset,
        groups::pause,
        groups::resume,
        groups::change_limits,
        groups::reset_limits,
        groups::workers,
        schedules::create,
        schedules::list,
        schedules::delete,
        audit::list,
        workflows::create_workflow,
        workflows::get_workflow,
        workflows::cancel_workflow,
        workflows::create_batch,
        workflows::get_batch,
        workflows::cancel_batch,
        system::healthz,
        system::readyz,
        system::metrics,
        system::openapi
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI 3 document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The API router over `state`.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/jobs", post(submit::submit).get(jobs::list))
        .route(
            "/v1/jobs/batch",
            post(batch::submit).layer(DefaultBodyLimit::max(batch::body_limit(&state.config))),
        )
        .route("/v1/jobs/cancel", post(bulk::cancel))
        .route("/v1/jobs/retry", post(bulk::retry))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/logs", get(activity::logs))
        .route("/v1/jobs/{id}/events", get(activity::events))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{group}", get(groups::get))
        .route("/v1/groups/{group}/reset", post(groups::reset))
        .route("/v1/groups/{group}/pause", post(groups::pause))
        .route("/v1/groups/{group}/resume", post(groups::resume))
        .route(
            "/v1/groups/{group}/limits",
            patch(groups::change_limits).delete(groups::reset_limits),
        )
        .route("/v1/workers", get(groups::workers))
        .route("/v1/schedules", post(schedules::create).get(schedules::list))
        .route("/v1/schedules/{name}", delete(schedules::delete))
        .route("/v1/audit", get(audit::list))
        .route(
            "/v1/workflows",
            post(workflows::create_workflow).layer(DefaultBodyLimit::max(batch::body_limit(&state.config))),
        )
        .route("/v1/workflows/{id}", get(workflows::get_workflow))
        .route("/v1/workflows/{id}/cancel", post(workflows::cancel_workflow))
        .route(
            "/v1/batches",
            post(workflows::create_batch).layer(DefaultBodyLimit::max(batch::body_limit(&state.config))),
        )
        .route("/v1/batches/{id}", get(workflows::get_batch))
        .route("/v1/batches/{id}/cancel", post(workflows::cancel_batch))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(body_limit(&state.config)))
        .layer(middleware::from_fn_with_state(state.clone(), access::guard))
        // The web UI signs its visitors in with a session cookie of its own: outside the
        // Bearer guard, inside the request metrics.
        .merge(crate::ui::router())
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The largest request body: room for the JSON envelope around args of `max_args_bytes`.
pub fn body_limit(config: &Config) -> usize {
    config.max_args_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

/// Counts and times every request by method, matched route and status.
async fn track(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    // Label values stay bounded whatever clients send.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .http_requests
        .with_label_values(&[&method, &route, &status])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    response
}
