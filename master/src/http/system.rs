//! Liveness, readiness, metrics and the OpenAPI document.

use super::backend;
use super::error::ApiError;
use crate::state::SharedState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use jobfleet_api::{ErrorBody, Health};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: RabbitMQ and Redis are reachable.
#[utoipa::path(get, path = "/readyz", tag = "system", responses((status = 200, body = Health), (status = 503, description = "RabbitMQ or Redis unreachable", body = ErrorBody)))]
pub async fn readyz(State(state): State<SharedState>) -> Result<Json<Health>, ApiError> {
    backend::redis(state.coordinator.ping()).await?;
    let channel = backend::broker(state.inspector.get()).await?;
    if !channel.status().connected() {
        state.inspector.invalidate().await;
        return Err(ApiError::unavailable("the broker (RabbitMQ) is unavailable"));
    }
    Ok(Json(Health { status: "ok".into() }))
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    crate::fleet::refresh_gauges(&state).await;
    state.metrics.waiting_requests.set(state.waiters.count() as i64);
    state
        .metrics
        .result_feed
        .set(i64::from(state.waiters.feeding().await));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi_document())
}
