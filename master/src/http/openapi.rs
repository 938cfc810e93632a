//! The error answers several routes' OpenAPI annotations share. Documentation only: the
//! handlers answer with [`ApiError`](super::error::ApiError).

use jobfleet_api::ErrorBody;
use utoipa::IntoResponses;

/// 404 for a job id with no record.
#[derive(Debug, IntoResponses)]
#[response(status = 404, description = "Unknown job")]
pub struct UnknownJob(pub ErrorBody);

/// 404 for a group the configuration does not name.
#[derive(Debug, IntoResponses)]
#[response(status = 404, description = "Unknown group")]
pub struct UnknownGroup(pub ErrorBody);

/// 503 of a route that reads only Redis.
#[derive(Debug, IntoResponses)]
#[response(status = 503, description = "Redis down")]
pub struct RedisDown(pub ErrorBody);

/// 503 of a route that needs Redis and the broker.
#[derive(Debug, IntoResponses)]
#[response(status = 503, description = "A backing service down")]
pub struct BackendDown(pub ErrorBody);

/// 400 for a bulk action's filter that is malformed.
#[derive(Debug, IntoResponses)]
#[response(
    status = 400,
    description = "Malformed filter: not JSON, an unknown field or status, a bad id or cursor, or no field given"
)]
pub struct BadFilter(pub ErrorBody);

/// 422 for a bulk action's filter over the bound.
#[derive(Debug, IntoResponses)]
#[response(status = 422, description = "More than 1000 ids")]
pub struct TooManyIds(pub ErrorBody);
