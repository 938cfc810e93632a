//! SPEC §8 through the router, with no services: every route of the OpenAPI document ×
//! every role. No token or a bad one is 401 `unauthorized`, a role too low 403 `forbidden`
//! (both before any handler touches Redis or the broker: the state points where nothing
//! listens, so a handler that ran would answer 503 or 4xx of its own), and a role high
//! enough gets past the check.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use jobfleet_common::auth::Role;
use jobfleet_master::http::openapi_document;
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;

mod support;

use support::{app_of, auth_fleet, TOKENS};

fn app(open_metrics: bool) -> Router {
    app_of(auth_fleet(&format!("open_metrics = {open_metrics}\n"), ""))
}

/// The role each documented route needs (`None`: open), written out here on purpose,
/// apart from the master's own table. A route missing here fails the test.
fn expected(method: &str, path: &str) -> Option<Role> {
    match (method, path) {
        ("GET", "/healthz" | "/readyz") => None,
        ("GET", "/v1/audit") => Some(Role::Admin),
        (
            "GET",
            "/v1/jobs"
            | "/v1/jobs/{id}"
            | "/v1/jobs/{id}/logs"
            | "/v1/jobs/{id}/events"
            | "/v1/groups"
            | "/v1/groups/{group}"
            | "/v1/workers",
        ) => Some(Role::Read),
        ("GET", "/v1/schedules" | "/v1/workflows/{id}" | "/v1/batches/{id}") => Some(Role::Read),
        (
            "POST",
            "/v1/workflows" | "/v1/workflows/{id}/cancel" | "/v1/batches" | "/v1/batches/{id}/cancel",
        ) => Some(Role::Submit),
        ("POST", "/v1/jobs/cancel" | "/v1/jobs/retry" | "/v1/schedules") => Some(Role::Admin),
        ("DELETE", "/v1/schedules/{name}") => Some(Role::Admin),
        ("GET", "/metrics" | "/openapi.json") => Some(Role::Read),
        ("POST", "/v1/jobs" | "/v1/jobs/batch" | "/v1/jobs/{id}/cancel") => Some(Role::Submit),
        ("DELETE", "/v1/jobs/{id}") | ("POST", "/v1/groups/{group}/reset") => Some(Role::Admin),
        ("POST", "/v1/groups/{group}/pause" | "/v1/groups/{group}/resume") => Some(Role::Admin),
        ("PATCH" | "DELETE", "/v1/groups/{group}/limits") => Some(Role::Admin),
        _ => panic!("{method} {path}: add it to this test's table"),
    }
}

/// Every (method, concrete path) of the OpenAPI document.
fn documented_routes() -> Vec<(Method, String, String)> {
    let document = serde_json::to_value(openapi_document()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "job-1")
                .replace("{group}", "etl")
                .replace("{name}", "nightly");
            let method: Method = method.to_uppercase().parse().unwrap();
            routes.push((method, path.clone(), concrete));
        }
    }
    assert!(routes.len() >= 14, "{routes:?}");
    routes
}

async fn send(
    app: Router,
    method: &Method,
    uri: &str,
    authorization: Option<&str>,
) -> (StatusCode, Value, bool) {
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let body = if method == Method::POST { "{}" } else { "" };
    let request = builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), app.oneshot(request))
        .await
        .expect("an answer in bounded time")
        .expect("the router never fails");
    let status = response.status();
    let challenged = response.headers().get(header::WWW_AUTHENTICATE).is_some();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, challenged)
}

#[tokio::test]
async fn every_route_checks_the_token_and_its_role_before_its_handler() {
    let app = app(false);
    for (method, path, uri) in documented_routes() {
        let needed = expected(method.as_str(), &path);
        let what = format!("{method} {uri}");
        for authorization in [
            None,
            Some("Bearer jf_wrong"),
            Some("Basic jf_admin_token"),
            Some("jf_admin_token"),
        ] {
            let (status, body, challenged) = send(app.clone(), &method, &uri, authorization).await;
            if needed.is_some() {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{what} with {authorization:?}: {body}"
                );
                assert_eq!(body["error"]["kind"], "unauthorized", "{what}: {body}");
                assert!(challenged, "{what}: 401 without WWW-Authenticate");
            } else {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{what} is open");
            }
        }
        for (role, token) in TOKENS {
            let bearer = format!("Bearer {token}");
            let (status, body, _) = send(app.clone(), &method, &uri, Some(&bearer)).await;
            match needed {
                Some(needed) if !role.allows(needed) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what} as {role}: {body}");
                    assert_eq!(body["error"]["kind"], "forbidden", "{what}: {body}");
                }
                _ => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what} as {role}: {status} {body}"
                ),
            }
        }
    }
}

#[tokio::test]
async fn unknown_routes_tell_strangers_nothing_and_open_metrics_opens_only_metrics() {
    let (status, _, _) = send(app(false), &Method::GET, "/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        app(false),
        &Method::GET,
        "/v1/nowhere",
        Some("Bearer jf_read_token"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send(app(true), &Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(app(true), &Method::GET, "/v1/groups", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_and_huge_tokens_are_401_never_a_crash() {
    let huge = format!("Bearer {}", "a".repeat(8000));
    let bad_utf8 = "Bearer jf_\u{00e9}t\u{00e9}";
    for authorization in [
        "",
        "Bearer",
        "Bearer    ",
        &huge,
        bad_utf8,
        "Bearer a b c",
        "bearer",
    ] {
        let (status, body, _) = send(app(false), &Method::GET, "/v1/jobs", Some(authorization)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:.40}: {body}");
        assert_eq!(body["error"]["kind"], "unauthorized");
    }
}
