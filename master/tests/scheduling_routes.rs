//! The 4xx answers of the scheduling routes and fields (SPEC §9) through the router, with
//! no service running (see router.rs): a request that reached Redis or the broker would
//! answer 503, not the 4xx asserted here.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use jobfleet_common::config::Config;
use jobfleet_master::http::router;
use jobfleet_master::state::AppState;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Nothing listens on port 1.
const FLEET: &str = r#"
amqp_url = "amqp://127.0.0.1:1"
redis_url = "redis://127.0.0.1:1"

[groups.etl.functions.echo]

[schedules.nightly]
cron = "0 2 * * *"
group = "etl"
function = "echo"
"#;

/// Sends `body` to `method uri` and asserts the error answer; returns its message.
async fn expect_error(method: Method, uri: &str, body: &str, status: StatusCode, kind: &str) -> String {
    let config = Config::from_toml(FLEET).expect("valid config");
    let state = Arc::new(AppState::new(config, CancellationToken::new()).expect("state"));
    let request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request");
    let response = tokio::time::timeout(Duration::from_secs(5), router(state).oneshot(request))
        .await
        .expect("an answer without waiting on a service")
        .expect("the router never fails");
    let got = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&bytes).expect("a JSON body");
    assert_eq!(got, status, "{method} {uri} {body}: {answer}");
    assert_eq!(answer["error"]["kind"], kind, "{method} {uri} {body}: {answer}");
    answer["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

fn submit(extra: Value) -> String {
    let mut body = json!({"group": "etl", "function": "echo"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body.to_string()
}

#[tokio::test]
async fn delays_beyond_the_maximum_or_unreadable_are_refused() {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    for (extra, needle) in [
        (json!({"delay_ms": 2_592_000_001u64}), "at most 2592000000 ms"),
        (json!({"run_at": "2999-01-01T00:00:00Z"}), "at most 2592000000 ms"),
        (json!({"run_at": "tomorrow"}), "RFC 3339"),
        (
            json!({"run_at": "2030-01-01T00:00:00Z", "delay_ms": 5}),
            "not both",
        ),
    ] {
        let message = expect_error(
            Method::POST,
            "/v1/jobs",
            &submit(extra),
            unprocessable,
            "invalid_value",
        )
        .await;
        assert!(message.contains(needle), "{message}");
    }
    for extra in [
        json!({"delay_ms": -1}),
        json!({"delay_ms": "soon"}),
        json!({"run_at": 5}),
    ] {
        expect_error(
            Method::POST,
            "/v1/jobs",
            &submit(extra),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn bulk_filters_that_are_empty_malformed_or_over_the_bound_are_refused() {
    let too_many: Vec<String> = (0..1001).map(|i| format!("j{i}")).collect();
    for action in ["/v1/jobs/cancel", "/v1/jobs/retry"] {
        let bad = StatusCode::BAD_REQUEST;
        for body in [
            json!({}).to_string(),
            json!({"status": "lost"}).to_string(),
            json!({"ids": ["has space"]}).to_string(),
            json!({"ids": ["a"], "cursor": "1.a"}).to_string(),
            json!({"group": "etl", "cursor": "nonsense"}).to_string(),
            json!({"group": "etl", "colour": "red"}).to_string(),
            json!({"ids": "a"}).to_string(),
            "not json".to_string(),
        ] {
            expect_error(Method::POST, action, &body, bad, "bad_request").await;
        }
        let message = expect_error(
            Method::POST,
            action,
            &json!({"group": "nope"}).to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert!(message.contains("nope"), "{message}");
        let message = expect_error(
            Method::POST,
            action,
            &json!({"ids": too_many}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        )
        .await;
        assert!(message.contains("at most 1000"), "{message}");
    }
}

fn schedule(extra: Value) -> String {
    let mut body = json!({"name": "hourly", "cron": "0 * * * *", "group": "etl", "function": "echo"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body.to_string()
}

#[tokio::test]
async fn schedules_with_bad_input_are_refused_with_the_reason() {
    let post = |body: String, status: StatusCode, kind: &'static str| async move {
        expect_error(Method::POST, "/v1/schedules", &body, status, kind).await
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    for (extra, needle) in [
        (json!({"cron": "61 * * * *"}), "invalid cron expression"),
        (json!({"cron": "* * *"}), "3 fields"),
        (json!({"cron": "0 0 30 2 *"}), "never matches"),
        (json!({"timezone": "Mars/Olympus"}), "unknown time zone"),
    ] {
        let message = post(schedule(extra), unprocessable, "invalid_value").await;
        assert!(message.contains(needle), "{message}");
    }
    post(
        schedule(json!({"function": "nope"})),
        unprocessable,
        "unknown_function",
    )
    .await;
    post(
        schedule(json!({"group": "nope"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let message = post(
        schedule(json!({"name": "has:colon"})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(message.contains("schedule name"), "{message}");
    post(
        schedule(json!({"colour": "red"})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    post(
        json!({"name": "x"}).to_string(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let message = post(
        schedule(json!({"name": "nightly"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(message.contains("config file"), "{message}");
    let message = expect_error(
        Method::DELETE,
        "/v1/schedules/nightly",
        "",
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(message.contains("config file"), "{message}");
}
