//! Who may call what (SPEC §8): the role each route needs, the `Bearer` token check, and
//! the audit of every cancel and admin action.
//!
//! The rules are a table over (method, route template), checked before any handler runs.
//! A route the table does not name needs `admin`, so a route added later is closed until
//! somebody opens it on purpose.

use super::error::ApiError;
use crate::state::SharedState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jobfleet_common::auth::{Principal, Role};

/// What a request needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anybody: liveness and readiness probes.
    Open,
    /// A token of at least this role.
    Needs(Role),
}

/// The access rule of `method` on `route` (the matched route template; `None` for a path
/// no route matches, which needs `read` so that strangers learn nothing of the API).
pub fn required(method: &Method, route: Option<&str>, open_metrics: bool) -> Access {
    let Some(route) = route else {
        return Access::Needs(Role::Read);
    };
    match (method.as_str(), route) {
        (_, "/healthz" | "/readyz") => Access::Open,
        ("GET" | "HEAD", "/metrics") if open_metrics => Access::Open,
        ("GET" | "HEAD", "/v1/audit") => Access::Needs(Role::Admin),
        ("GET" | "HEAD", _) => Access::Needs(Role::Read),
        // Bulk actions and schedules (SPEC §9) are admin's, named here so that nobody
        // opens them by widening a pattern below.
        ("POST", "/v1/jobs/cancel" | "/v1/jobs/retry" | "/v1/schedules")
        | ("DELETE", "/v1/schedules/{name}") => Access::Needs(Role::Admin),
        (
            "POST",
            "/v1/jobs" | "/v1/jobs/batch" | "/v1/jobs/{id}/cancel" | "/v1/workflows" | "/v1/batches",
        )
        | ("POST", "/v1/workflows/{id}/cancel" | "/v1/batches/{id}/cancel") => Access::Needs(Role::Submit),
        _ => Access::Needs(Role::Admin),
    }
}

/// Whether a request is written to the audit trail: every cancel and every admin action
/// that changes something.
pub fn audited(method: &Method, route: Option<&str>, access: Access) -> bool {
    let Some(route) = route else { return false };
    if matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    access == Access::Needs(Role::Admin) || route.ends_with("/cancel")
}

/// The caller of a request, as handlers and the audit see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The master runs without `[auth]` (or with `disabled = true`).
    Anonymous,
    /// A configured token.
    Token(Principal),
}

impl Caller {
    /// The name the audit trail shows.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Token(principal) => &principal.name,
        }
    }

    /// The role the audit trail shows.
    pub fn role(&self) -> &str {
        match self {
            Caller::Anonymous => "none",
            Caller::Token(principal) => principal.role.as_str(),
        }
    }
}

/// The middleware: checks the token against the route's rule, answers 401/403 before the
/// handler, and audits what [`audited`] names once it has been answered (a 403 included:
/// a refused attempt at an admin action is worth knowing about).
pub async fn guard(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = request.method().clone();
    let open_metrics = state.auth.as_ref().is_none_or(|auth| auth.open_metrics);
    let access = required(&method, route.as_deref(), open_metrics);
    let caller = match authenticate(&state, request.headers(), access) {
        Ok(caller) => caller,
        Err(message) => return unauthorized(message),
    };
    let audit = audited(&method, route.as_deref(), access).then(|| {
        let action = format!("{method} {}", route.as_deref().unwrap_or(""));
        (action, request.uri().path().to_string())
    });
    let response = match forbidden(&caller, access) {
        Some(refusal) => refusal,
        None => {
            request.extensions_mut().insert(caller.clone());
            next.run(request).await
        }
    };
    if let Some((action, target)) = audit {
        super::audit::record(&state, &caller, action, target, response.status()).await;
    }
    response
}

/// The caller of a request that needs `access`, or why it is 401.
fn authenticate(state: &SharedState, headers: &HeaderMap, access: Access) -> Result<Caller, &'static str> {
    let (Some(auth), Access::Needs(_)) = (state.auth.as_ref(), access) else {
        return Ok(Caller::Anonymous);
    };
    let token = bearer(headers)?;
    let principal = auth.tokens.authenticate(token).ok_or("unknown token")?;
    Ok(Caller::Token(principal.clone()))
}

/// The 403 answer when `caller`'s role is below what `access` needs.
fn forbidden(caller: &Caller, access: Access) -> Option<Response> {
    let (Caller::Token(principal), Access::Needs(needed)) = (caller, access) else {
        return None;
    };
    if principal.role.allows(needed) {
        return None;
    }
    let message = format!(
        "this needs the {needed} role; token {:?} has {}",
        principal.name, principal.role
    );
    Some(ApiError::forbidden(message).into_response())
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Result<&str, &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or("this needs a token: send `Authorization: Bearer <token>`")?;
    if values.next().is_some() {
        return Err("send one Authorization header");
    }
    let text = value
        .to_str()
        .map_err(|_| "the Authorization header must be `Bearer <token>`")?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or("the Authorization header must be `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("the Authorization header must be `Bearer <token>`");
    }
    Ok(token.trim())
}

/// 401 with the API's error body and `WWW-Authenticate: Bearer`.
fn unauthorized(message: &str) -> Response {
    (
        [(header::WWW_AUTHENTICATE, "Bearer")],
        ApiError::unauthorized(message),
    )
        .into_response()
}

/// Documents the `Bearer` scheme in the OpenAPI document: every operation but the probes
/// requires it and may answer 401 and 403 (the master applies them when `[auth]` is on).
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/healthz" || path == "/readyz" {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "401".into(),
                    error_response("No token, a malformed one, or an unknown one").into(),
                );
                responses.insert("403".into(), error_response("The token's role is too low").into());
            }
        }
    }
}

/// A documented error answer with the API's error body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_read_writes_need_submit_and_the_rest_admin() {
        let rule = |method: Method, route: &str| required(&method, Some(route), false);
        assert_eq!(rule(Method::GET, "/healthz"), Access::Open);
        assert_eq!(rule(Method::GET, "/readyz"), Access::Open);
        assert_eq!(rule(Method::GET, "/metrics"), Access::Needs(Role::Read));
        assert_eq!(required(&Method::GET, Some("/metrics"), true), Access::Open);
        assert_eq!(rule(Method::GET, "/v1/jobs/{id}"), Access::Needs(Role::Read));
        assert_eq!(rule(Method::GET, "/v1/audit"), Access::Needs(Role::Admin));
        assert_eq!(rule(Method::POST, "/v1/jobs"), Access::Needs(Role::Submit));
        assert_eq!(
            rule(Method::POST, "/v1/jobs/{id}/cancel"),
            Access::Needs(Role::Submit)
        );
        assert_eq!(rule(Method::DELETE, "/v1/jobs/{id}"), Access::Needs(Role::Admin));
        assert_eq!(
            rule(Method::POST, "/v1/groups/{group}/reset"),
            Access::Needs(Role::Admin)
        );
        for (method, route) in [
            (Method::POST, "/v1/jobs/cancel"),
            (Method::POST, "/v1/jobs/retry"),
            (Method::POST, "/v1/schedules"),
            (Method::DELETE, "/v1/schedules/{name}"),
        ] {
            assert_eq!(
                rule(method.clone(), route),
                Access::Needs(Role::Admin),
                "{method} {route}"
            );
            assert!(audited(&method, Some(route), Access::Needs(Role::Admin)));
        }
        assert_eq!(rule(Method::GET, "/v1/schedules"), Access::Needs(Role::Read));
        assert_eq!(
            rule(Method::POST, "/v1/some/new/route"),
            Access::Needs(Role::Admin)
        );
        assert_eq!(required(&Method::GET, None, false), Access::Needs(Role::Read));
    }

    #[test]
    fn cancels_and_admin_changes_are_audited_reads_and_submits_are_not() {
        let audit = |method: Method, route: &str| {
            audited(&method, Some(route), required(&method, Some(route), false))
        };
        assert!(audit(Method::POST, "/v1/jobs/{id}/cancel"));
        assert!(audit(Method::DELETE, "/v1/jobs/{id}"));
        assert!(audit(Method::POST, "/v1/groups/{group}/reset"));
        assert!(!audit(Method::POST, "/v1/jobs"));
        assert!(!audit(Method::GET, "/v1/audit"));
        assert!(!audited(&Method::POST, None, Access::Needs(Role::Admin)));
    }

    #[test]
    fn only_a_single_well_formed_bearer_header_carries_a_token() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(header::AUTHORIZATION, value.parse().unwrap());
            }
            map
        };
        assert_eq!(bearer(&headers(&["Bearer abc"])), Ok("abc"));
        assert_eq!(bearer(&headers(&["bearer  abc "])), Ok("abc"));
        for bad in [
            &[][..],
            &["Basic abc"],
            &["Bearer"],
            &["Bearer "],
            &["abc"],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(bearer(&headers(bad)).is_err(), "{bad:?}");
        }
    }
}
