//! Every 4xx answer of the HTTP API, driven through the router with `oneshot` and no
//! services: the state points at a Redis and a broker where nothing listens (both pools
//! connect on first use), so a request that reached either would answer 503, not the
//! 4xx asserted here. Each answer is the `{"error": {kind, message}}` body of SPEC §4.
//! Requests that do need a service answer 503 in bounded time and leave nothing behind.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use jobfleet_common::config::Config;
use jobfleet_master::http::router;
use jobfleet_master::state::AppState;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Nothing listens on port 1: a request that touched Redis or RabbitMQ would fail.
const FLEET: &str = r#"
amqp_url = "amqp://127.0.0.1:1"
redis_url = "redis://127.0.0.1:1"
max_args_bytes = 1000

[groups.etl.functions.echo]
[groups.etl.functions.wordcount]
schema = { type = "object", required = ["text"], properties = { text = { type = "string" } } }
"#;

/// The body limit of the router over [`FLEET`]: 2 × max_args_bytes + 64 KiB.
const BODY_LIMIT: usize = 2 * 1000 + 64 * 1024;

fn state() -> Arc<AppState> {
    let config = Config::from_toml(FLEET).expect("valid config");
    Arc::new(AppState::new(config, CancellationToken::new()).expect("state without connecting"))
}

fn app() -> Router {
    router(state())
}

/// A request with an optional content type and body.
fn request(method: Method, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).expect("a valid request")
}

/// Sends `request` to `app` and returns the status and the JSON body.
async fn send(app: Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = tokio::time::timeout(Duration::from_secs(5), app.oneshot(request))
        .await
        .expect("an answer without waiting on a service")
        .expect("the router never fails");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

/// Asserts an error answer: `status`, a body that is exactly `{"error": {kind, message}}`
/// with `kind`; returns the message.
async fn expect_error(request: Request<Body>, status: StatusCode, kind: &str) -> String {
    let what = format!("{} {}", request.method(), request.uri());
    let (got, body) = send(app(), request).await;
    assert_eq!(got, status, "{what}: {body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {body}"));
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{what}: {body}");
    assert_eq!(error.len(), 2, "{what}: {body}");
    assert_eq!(error["kind"], kind, "{what}: {body}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {body}"));
    assert!(!message.is_empty(), "{what}: {body}");
    message.to_string()
}

/// `POST /v1/jobs` with a JSON body.
fn submit(body: Value) -> Request<Body> {
    submit_to("/v1/jobs", body)
}

fn submit_to(uri: &str, body: Value) -> Request<Body> {
    request(Method::POST, uri, Some("application/json"), body.to_string())
}

#[tokio::test]
async fn malformed_submit_bodies_are_400() {
    let bodies = [
        "{",
        "",
        "[]",
        "null",
        r#"{"function": "echo"}"#,
        r#"{"group": "etl"}"#,
        r#"{"group": 1, "function": "echo"}"#,
        r#"{"group": "etl", "function": "echo", "id": 7}"#,
        r#"{"group": "etl", "function": "echo", "timeout_ms": -1}"#,
        r#"{"group": "etl", "function": "echo", "timeout_ms": "5s"}"#,
    ];
    for body in bodies {
        let request = request(Method::POST, "/v1/jobs", Some("application/json"), body);
        let message = expect_error(request, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(message.starts_with("invalid JSON body"), "{body}: {message}");
    }
}

#[tokio::test]
async fn the_body_decides_whatever_the_content_type() {
    // The content type is not checked: JSON is read from any body, and anything else is 400.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let form = request(Method::POST, "/v1/jobs", content_type, "group=etl&function=echo");
        expect_error(form, StatusCode::BAD_REQUEST, "bad_request").await;
        let body = json!({"group": "nope", "function": "echo"}).to_string();
        let json = request(Method::POST, "/v1/jobs", content_type, body);
        expect_error(json, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn unknown_groups_are_404_and_unknown_functions_422() {
    let message = expect_error(
        submit(json!({"group": "nope", "function": "echo"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(message, r#"unknown group "nope""#);
    // Unknown fields are ignored: validation goes on to the group.
    let body = json!({"group": "nope", "function": "echo", "future_field": 9, "args": {}});
    expect_error(submit(body), StatusCode::NOT_FOUND, "not_found").await;
    let message = expect_error(
        submit(json!({"group": "etl", "function": "nope"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_function",
    )
    .await;
    assert_eq!(message, r#"group "etl" has no function "nope""#);
    for (method, uri) in [
        (Method::GET, "/v1/groups/nope"),
        (Method::POST, "/v1/groups/nope/reset"),
        (Method::POST, "/v1/groups/nope/pause"),
        (Method::POST, "/v1/groups/nope/resume"),
        (Method::DELETE, "/v1/groups/nope/limits"),
    ] {
        let message = expect_error(request(method, uri, None, ""), StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(message, r#"unknown group "nope""#);
    }
}

#[tokio::test]
async fn invalid_submit_values_are_400() {
    let long_id = "a".repeat(129);
    let long_key = "k".repeat(257);
    let cases = [
        (json!({"id": "a b"}), "id must be"),
        (json!({"id": ""}), "id must be"),
        (json!({"id": "é"}), "id must be"),
        (json!({"id": long_id}), "id must be"),
        (json!({"timeout_ms": 0}), "timeout_ms must be positive"),
        (
            json!({"idempotency_key": ""}),
            "idempotency_key must be 1..=256 bytes",
        ),
        (
            json!({"idempotency_key": long_key}),
            "idempotency_key must be 1..=256 bytes",
        ),
    ];
    for (fields, expected) in cases {
        let mut body = json!({"group": "etl", "function": "echo"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let message = expect_error(submit(body.clone()), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(message.starts_with(expected), "{body}: {message}");
    }
}

#[tokio::test]
async fn priorities_out_of_range_or_for_a_group_without_max_priority_are_400() {
    for priority in [
        json!(10),
        json!(300),
        json!(-1),
        json!(2.5),
        json!("high"),
        json!([1]),
    ] {
        let body = json!({"group": "etl", "function": "echo", "priority": priority});
        let message = expect_error(submit(body), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(
            message.starts_with("invalid JSON body: priority must be an integer from 0 to 9"),
            "{priority}: {message}"
        );
    }
    // `etl` has no max_priority: its queue is no priority queue.
    let body = json!({"group": "etl", "function": "echo", "priority": 3});
    let message = expect_error(submit(body), StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(
        message.starts_with(r#"priority 3: group "etl" has no max_priority"#),
        "{message}"
    );
    let (_, document) = send(app(), request(Method::GET, "/openapi.json", None, "")).await;
    let schemas = &document["components"]["schemas"];
    let submitted = &schemas["SubmitRequest"]["properties"]["priority"];
    assert_eq!(
        (&submitted["minimum"], &submitted["maximum"]),
        (&json!(0), &json!(9)),
        "{submitted}"
    );
    assert!(
        schemas["JobView"]["properties"]["priority"].is_object(),
        "{schemas}"
    );
}

#[tokio::test]
async fn oversized_args_and_bodies_are_413() {
    let args = "x".repeat(1000);
    let message = expect_error(
        submit(json!({"group": "etl", "function": "echo", "args": args})),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert_eq!(message, "args have 1002 bytes; the limit is 1000");
    let args = "x".repeat(BODY_LIMIT);
    let message = expect_error(
        submit(json!({"group": "etl", "function": "echo", "args": args})),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert!(message.starts_with("the request body exceeds"), "{message}");
}

#[tokio::test]
async fn args_failing_the_schema_are_422() {
    for args in [json!({}), json!(null), json!({"text": 1}), json!("text")] {
        let body = json!({"group": "etl", "function": "wordcount", "args": args});
        expect_error(submit(body), StatusCode::UNPROCESSABLE_ENTITY, "invalid_args").await;
    }
}

#[tokio::test]
async fn wait_out_of_range_is_400() {
    let body = json!({"group": "etl", "function": "echo"});
    for wait in ["-1", "-0.5", "300.5", "301", "1e9", "NaN", "inf", "abc", ""] {
        let uri = format!("/v1/jobs?wait={wait}");
        let message = expect_error(
            submit_to(&uri, body.clone()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert!(!message.contains('\n'), "{wait}: {message}");
    }
    // The bounds themselves are accepted: validation goes on to the group.
    for wait in ["0", "300", "0.25"] {
        let uri = format!("/v1/jobs?wait={wait}");
        let body = json!({"group": "nope", "function": "echo"});
        expect_error(submit_to(&uri, body), StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn bad_list_queries_are_400() {
    let cases = [
        ("status=bogus", "unknown status"),
        ("status=QUEUED", "unknown status"),
        ("limit=0", "limit must be 1..=1000"),
        ("limit=1001", "limit must be 1..=1000"),
        ("limit=-1", "Failed to deserialize query string"),
        ("limit=ten", "Failed to deserialize query string"),
        ("cursor=garbage", "invalid cursor"),
        ("cursor=1.a%20b", "invalid cursor"),
        ("cursor=x.abc", "invalid cursor"),
        ("limit=5&status=bogus&cursor=garbage", "unknown status"),
    ];
    for (query, expected) in cases {
        let uri = format!("/v1/jobs?{query}");
        let message = expect_error(
            request(Method::GET, &uri, None, ""),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert!(message.contains(expected), "{query}: {message}");
    }
}

#[tokio::test]
async fn bad_log_and_event_queries_are_400() {
    let cases = [
        ("logs?limit=0", "limit must be 1..=1000"),
        ("logs?limit=1001", "limit must be 1..=1000"),
        ("logs?limit=ten", "Failed to deserialize query string"),
        ("logs?after=garbage", "is not an event id"),
        ("logs?after=1-2-3", "is not an event id"),
        ("events?after=(5", "is not an event id"),
    ];
    for (query, expected) in cases {
        let uri = format!("/v1/jobs/job-1/{query}");
        let message = expect_error(
            request(Method::GET, &uri, None, ""),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        assert!(message.contains(expected), "{query}: {message}");
    }
    let mut resumed = request(Method::GET, "/v1/jobs/job-1/events", None, "");
    resumed
        .headers_mut()
        .insert("last-event-id", "nonsense".parse().unwrap());
    let message = expect_error(resumed, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(message.contains("is not an event id"), "{message}");
}

#[tokio::test]
async fn unknown_routes_are_404() {
    for (method, uri) in [
        (Method::GET, "/"),
        (Method::GET, "/v1"),
        (Method::GET, "/v2/jobs"),
        (Method::GET, "/v1/nope"),
        (Method::GET, "/v1/jobs/a/b"),
        (Method::POST, "/v1/groups/etl/nope"),
        (Method::DELETE, "/v1/workers/w1"),
    ] {
        let message = expect_error(request(method, uri, None, ""), StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(message, "no such route");
    }
}

#[tokio::test]
async fn wrong_methods_are_405() {
    for (method, uri) in [
        (Method::PUT, "/v1/jobs"),
        (Method::DELETE, "/v1/jobs"),
        (Method::PATCH, "/v1/jobs/j1"),
        (Method::POST, "/v1/jobs/j1"),
        (Method::GET, "/v1/jobs/j1/cancel"),
        (Method::POST, "/v1/groups"),
        (Method::DELETE, "/v1/groups/etl"),
        (Method::GET, "/v1/groups/etl/reset"),
        (Method::POST, "/v1/workers"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/readyz"),
        (Method::POST, "/metrics"),
        (Method::DELETE, "/openapi.json"),
    ] {
        let wrong = request(method, uri, None, "");
        let message = expect_error(wrong, StatusCode::METHOD_NOT_ALLOWED, "bad_request").await;
        assert_eq!(message, "method not allowed on this route");
    }
}

#[tokio::test]
async fn what_needs_no_service_answers_without_one() {
    let (status, body) = send(app(), request(Method::GET, "/healthz", None, "")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = send(app(), request(Method::GET, "/openapi.json", None, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["paths"]["/v1/jobs"].is_object(), "{body}");
}

#[tokio::test]
async fn error_answers_are_counted_by_route_and_status() {
    let state = state();
    let app = router(state.clone());
    send(app.clone(), request(Method::PUT, "/v1/jobs", None, "")).await;
    send(app.clone(), request(Method::GET, "/v1/nope", None, "")).await;
    send(app, submit(json!({"group": "etl", "function": "nope"}))).await;
    let text = state.metrics.render();
    for series in [
        r#"jobfleet_http_requests_total{method="PUT",route="/v1/jobs",status="405"} 1"#,
        r#"jobfleet_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"jobfleet_http_requests_total{method="POST",route="/v1/jobs",status="422"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == series), "{series} missing from\n{text}");
    }
}

#[tokio::test]
async fn waiting_submits_that_fail_leave_no_registration() {
    let state = state();
    let app = router(state.clone());
    let submits = (0..3).map(|_| {
        let request = submit_to("/v1/jobs?wait=5", json!({"group": "etl", "function": "echo"}));
        tokio::time::timeout(Duration::from_secs(60), app.clone().oneshot(request))
    });
    for answer in futures::future::join_all(submits).await {
        let response = answer
            .expect("an answer in bounded time")
            .expect("the router never fails");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        state.waiters.count(),
        0,
        "every registration left with its request"
    );
}

/// `PATCH /v1/groups/{group}/limits` with a JSON body.
fn patch_limits(body: &str) -> Request<Body> {
    request(
        Method::PATCH,
        "/v1/groups/etl/limits",
        Some("application/json"),
        body.to_string(),
    )
}

#[tokio::test]
async fn bad_limits_are_400() {
    for (body, says) in [
        (r#"{"max_running": 0}"#, "max_running must be at least 1"),
        (r#"{"max_running": -3}"#, "max_running"),
        (r#"{"max_running": "five"}"#, "max_running"),
        (r#"{"rate_limit": "20"}"#, "N/s, N/m or N/h"),
        (r#"{"rate_limit": "0/s"}"#, "N/s, N/m or N/h"),
        (r#"{"rate_limit": "5/d"}"#, "N/s, N/m or N/h"),
        (r#"{"limit_key": ""}"#, "limit_key"),
        (r#"{"max_runing": 5}"#, "max_runing"),
        (r#""pause""#, "expected"),
        (r#"{"#, "EOF"),
    ] {
        let message = expect_error(patch_limits(body), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(message.contains(says), "{body}: {message}");
    }
    let unknown = request(
        Method::PATCH,
        "/v1/groups/nope/limits",
        Some("application/json"),
        "{}",
    );
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn malformed_empty_and_oversized_batches_are_refused_whole() {
    for body in ["{", "", "[]", "null", "{}", r#"{"jobs": {}}"#, r#"{"jobs": 3}"#] {
        let request = request(Method::POST, "/v1/jobs/batch", Some("application/json"), body);
        let message = expect_error(request, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(message.starts_with("invalid JSON body"), "{body}: {message}");
    }
    let message = expect_error(
        submit_to("/v1/jobs/batch", json!({"jobs": []})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert_eq!(message, "jobs is empty: a batch has 1..=1000 jobs");
    let job = json!({"group": "etl", "function": "echo"});
    let jobs = vec![job; 1001];
    let message = expect_error(
        submit_to("/v1/jobs/batch", json!({ "jobs": jobs })),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    assert!(
        message.starts_with("a batch has at most 1000 jobs, this one 1001"),
        "{message}"
    );
    // Beyond a single submit's body limit but within the batch's: read, and refused only for
    // its number of jobs.
    let big = json!({"group": "etl", "function": "echo", "args": "x".repeat(900)});
    let jobs = vec![big; 1001];
    let body = json!({ "jobs": jobs });
    assert!(body.to_string().len() > BODY_LIMIT);
    let request = submit_to("/v1/jobs/batch", body);
    expect_error(request, StatusCode::UNPROCESSABLE_ENTITY, "invalid_value").await;
    let huge = "x".repeat(33 * 1024 * 1024);
    let request = submit_to(
        "/v1/jobs/batch",
        json!({"jobs": [{"group": "etl", "function": "echo", "args": huge}]}),
    );
    expect_error(request, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
}

#[tokio::test]
async fn a_batch_of_invalid_jobs_answers_each_error_in_place_without_a_service() {
    let jobs = json!([
        {"group": "nope", "function": "echo"},
        {"group": "etl", "function": "nope"},
        {"group": "etl", "function": "echo", "id": "a b"},
        {"group": "etl", "function": "wordcount", "args": {"text": 3}},
        {"group": "etl", "function": "echo", "args": "x".repeat(1001)},
        {"group": "etl", "function": "echo", "priority": 3},
        {"group": "etl", "function": "echo", "delay_ms": 2_592_000_001_u64},
        {"function": "echo"},
        {"group": "etl", "function": "echo", "priority": 10},
        "not a job",
    ]);
    let (status, body) = send(app(), submit_to("/v1/jobs/batch", json!({ "jobs": jobs }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = [
        (404, "not_found"),
        (422, "unknown_function"),
        (400, "bad_request"),
        (422, "invalid_args"),
        (413, "too_large"),
        (400, "bad_request"),
        (422, "invalid_value"),
        (400, "bad_request"),
        (400, "bad_request"),
        (400, "bad_request"),
    ];
    let answers = body["jobs"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(answers.len(), expected.len(), "{body}");
    for (answer, (code, kind)) in answers.iter().zip(expected) {
        assert_eq!(answer["outcome"], "error", "{answer}");
        assert_eq!(answer["http_status"], code, "{answer}");
        assert_eq!(answer["error"]["kind"], kind, "{answer}");
        assert!(answer.get("id").is_none(), "{answer}");
    }
    assert_eq!(answers[0]["error"]["message"], r#"unknown group "nope""#);
    assert_eq!(
        (
            body["created"].clone(),
            body["existing"].clone(),
            body["failed"].clone()
        ),
        (json!(0), json!(0), json!(10))
    );
    // Each job is answered as POST /v1/jobs answers it alone.
    let alone = expect_error(
        submit(json!({"group": "etl", "function": "echo", "priority": 10})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let in_batch = answers[8]["error"]["message"].as_str().unwrap();
    let why = "priority must be an integer from 0 to 9, not 10";
    assert!(
        in_batch.contains(why) && alone.contains(why),
        "{in_batch} / {alone}"
    );
}

/// A workflow step of `etl.echo` named `name`, after `after`.
fn step(name: &str, after: &[&str], args: Value) -> Value {
    json!({"name": name, "group": "etl", "function": "echo", "after": after, "args": args})
}

#[tokio::test]
async fn workflows_that_are_not_a_valid_dag_are_refused_before_anything_is_stored() {
    let unprocessable = [
        (json!({"steps": []}), "0 steps"),
        (
            json!({"steps": (0..10_001).map(|i| step(&format!("s{i}"), &[], Value::Null)).collect::<Vec<_>>()}),
            "10001 steps",
        ),
        (
            json!({"steps": [step("a", &["b"], Value::Null), step("b", &["a"], Value::Null)]}),
            "cycle",
        ),
        (
            json!({"steps": [step("a", &[], Value::Null), step("b", &["c", "a"], Value::Null), step("c", &["b"], Value::Null)]}),
            "cycle",
        ),
        (
            json!({"steps": [step("a", &["nope"], Value::Null)]}),
            "unknown step",
        ),
        (json!({"steps": [step("a", &["a"], Value::Null)]}), "itself"),
        (
            json!({"steps": [step("a", &[], Value::Null), step("a", &[], Value::Null)]}),
            "named twice",
        ),
        (
            json!({"steps": [step("has space", &[], Value::Null)]}),
            "step name",
        ),
        (
            json!({"steps": [step("a", &[], Value::Null), step("b", &[], json!({"x": {"$result": "a"}}))]}),
            "not in its after",
        ),
    ];
    for (body, expected) in unprocessable {
        let request = request(
            Method::POST,
            "/v1/workflows",
            Some("application/json"),
            body.to_string(),
        );
        let message = expect_error(request, StatusCode::UNPROCESSABLE_ENTITY, "invalid_value").await;
        assert!(message.contains(expected), "{message} should say {expected:?}");
    }
    let unknown_function = json!({"steps": [{"name": "a", "group": "etl", "function": "nope"}]});
    expect_error(
        submit_to("/v1/workflows", unknown_function),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_function",
    )
    .await;
    let schema =
        json!({"steps": [{"name": "a", "group": "etl", "function": "wordcount", "args": {"text": 1}}]});
    expect_error(
        submit_to("/v1/workflows", schema),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_args",
    )
    .await;
    let unknown_group = json!({"steps": [{"name": "a", "group": "nope", "function": "echo"}]});
    expect_error(
        submit_to("/v1/workflows", unknown_group),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let long_id = json!({"id": "x".repeat(64), "steps": [step("a", &[], Value::Null)]});
    expect_error(
        submit_to("/v1/workflows", long_id),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let unknown_field = json!({"steps": [step("a", &[], Value::Null)], "colour": 1});
    expect_error(
        submit_to("/v1/workflows", unknown_field),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn batches_without_jobs_or_with_bad_jobs_are_refused() {
    expect_error(
        submit_to("/v1/batches", json!({"jobs": []})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    let bad_job = json!({"jobs": [{"group": "etl", "function": "nope"}]});
    expect_error(
        submit_to("/v1/batches", bad_job),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_function",
    )
    .await;
    let bad_callback = json!({"jobs": [{"group": "etl", "function": "echo"}], "on_complete": {"group": "nope", "function": "echo"}});
    expect_error(
        submit_to("/v1/batches", bad_callback),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let malformed = request(Method::POST, "/v1/batches", Some("application/json"), "{");
    expect_error(malformed, StatusCode::BAD_REQUEST, "bad_request").await;
}
