//! API errors: `{"error": {"kind", "message"}}` with the status codes of SPEC §4. A backing
//! service's failure stays the answer's source and is logged; it is never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobfleet_api::{ErrorBody, ErrorDetail};
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::CoordinatorError;
use std::time::Duration;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// Boxed: a rare path, and it keeps `Result<_, ApiError>` small.
    #[source]
    source: Option<Box<Backend>>,
}

/// The failure of a backing service behind a 503 `unavailable`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Backend {
    /// A Redis call failed.
    #[error("redis call failed: {0}")]
    Coordinator(#[source] CoordinatorError),
    /// A broker call failed.
    #[error("broker call failed: {0}")]
    Broker(#[source] ClientError),
    /// A backing service did not answer in time.
    #[error("{service} did not answer within {after:?}")]
    Deadline {
        /// Which service.
        service: &'static str,
        /// How long it was given.
        after: Duration,
    },
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no token, a malformed `Authorization` header, or an unknown token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the token's role is too low for this request.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such job, group or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404: job `id` has no record.
    pub fn unknown_job(id: &str) -> Self {
        Self::not_found(format!("unknown job {id:?}"))
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

    /// 422: a well-formed request whose values cannot be used (a delay beyond the maximum,
    /// an invalid cron expression, an unknown time zone, a bulk filter over the bound).
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
    }

    /// 503: the group is broken.
    pub fn group_broken(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "group_broken", message)
    }

    /// 503: a backing service is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 503: a backing service did not answer within `after`.
    pub fn deadline(service: &'static str, after: Duration) -> Self {
        let message = format!(
            "the {service} did not answer within {}; try again later",
            humantime::format_duration(after)
        );
        ApiError::backend(Backend::Deadline { service, after }, &message)
    }

    /// 503: the broker blocks publishers (a memory or disk alarm); nothing was queued.
    pub fn broker_blocked() -> Self {
        Self::unavailable(
            "the broker (RabbitMQ) is blocking publishers (a memory or disk alarm); nothing was queued, try again later",
        )
    }

    /// 503: a job was published but its confirm did not come; it may still run.
    pub fn unconfirmed(id: &str, source: ApiError) -> Self {
        let message = format!(
            "the broker (RabbitMQ) did not confirm job {id:?}; it may still run: GET /v1/jobs/{id} shows it, \
             and submitting the same id again never runs it twice"
        );
        ApiError { message, ..source }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// 503 for a failed backing service, keeping its error as the source.
    fn backend(source: Backend, message: &str) -> Self {
        ApiError {
            source: Some(Box::new(source)),
            ..Self::unavailable(message)
        }
    }
}

impl ApiError {
    /// A copy for another job of the same batch: the same status, kind and message (the
    /// backing service's error stays with this one).
    pub fn same(&self) -> ApiError {
        ApiError::new(self.status, self.kind, self.message.clone())
    }

    /// The status and the `error` object of the answer, logging a backing service's failure.
    pub fn into_detail(self) -> (StatusCode, ErrorDetail) {
        match self.source.as_deref() {
            Some(Backend::Coordinator(e)) => tracing::error!(error = %e, "redis call failed"),
            Some(Backend::Broker(e)) => tracing::error!(error = %e, "broker call failed"),
            Some(e @ Backend::Deadline { .. }) => tracing::error!(error = %e, "backing service too slow"),
            None => {}
        }
        let detail = ErrorDetail {
            kind: self.kind.to_string(),
            message: self.message,
        };
        (self.status, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.into_detail();
        (status, Json(ErrorBody { error })).into_response()
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> Self {
        ApiError::backend(Backend::Coordinator(e), "the coordinator (Redis) is unavailable")
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        ApiError::backend(Backend::Broker(e), "the broker (RabbitMQ) is unavailable")
    }
}

impl From<crate::fleet::DepthError> for ApiError {
    fn from(e: crate::fleet::DepthError) -> Self {
        match e {
            crate::fleet::DepthError::Broker(e) => e.into(),
            crate::fleet::DepthError::Deadline => {
                ApiError::deadline("broker (RabbitMQ)", crate::fleet::DEPTH_DEADLINE)
            }
        }
    }
}

impl From<crate::flows::FlowError> for ApiError {
    fn from(e: crate::flows::FlowError) -> Self {
        match e {
            crate::flows::FlowError::Coordinator(e) => e.into(),
            crate::flows::FlowError::Broker(e) => e.into(),
            e => ApiError::unavailable(e.to_string()),
        }
    }
}
