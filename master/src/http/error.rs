//! API errors: `{"error": {"kind", "message"}}` with the status codes of SPEC §4. Details
//! of backend failures are logged, not returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::CoordinatorError;
use serde::Serialize;
use utoipa::ToSchema;

/// The error body of every failed call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: a job error kind of SPEC §2 where one applies (`unknown_function`,
    /// `invalid_args`, `too_large`, `group_broken`), else `bad_request`, `not_found`,
    /// `conflict` or `unavailable`.
    pub kind: String,
    /// For people.
    pub message: String,
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such job, group or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the route exists but not with this method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "bad_request",
            "method not allowed on this route",
        )
    }

    /// 409: the job's status does not allow it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: over a size limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 422: the group has no such function.
    pub fn unknown_function(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_function", message)
    }

    /// 422: the args fail the function's schema.
    pub fn invalid_args(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_args", message)
    }

    /// 503: the group is broken.
    pub fn group_broken(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "group_broken", message)
    }

    /// 503: a backing service is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> Self {
        tracing::error!(error = %e, "redis call failed");
        ApiError::unavailable("the coordinator (Redis) is unavailable")
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        tracing::error!(error = %e, "broker call failed");
        ApiError::unavailable("the broker (RabbitMQ) is unavailable")
    }
}
