//! The web UI's sign-in, session cookie and CSRF checks (SPEC §11) through the router, with
//! no services: the state points where nothing listens, so a request that got past the
//! checks to a handler answers 503, and one refused before answers 401, 403 or a redirect.

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::Router;
use jobfleet_common::auth::{Principal, Role};
use jobfleet_common::config::Config;
use jobfleet_master::ui::session::{Session, SessionKey};
use std::time::Duration;
use tower::ServiceExt;

mod support;

use support::{app_of, auth_fleet, TOKENS};

/// The fleet of [`auth_fleet`] with a fixed session secret (`extra` tables are appended).
fn config(extra: &str) -> Config {
    auth_fleet("", &format!("[ui]\nsession_secret = \"s3cret\"\n{extra}"))
}

fn app() -> Router {
    app_of(config(""))
}

/// Sends a request (a form body when `form` is given) with an optional session cookie.
async fn send(
    app: Router,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Response<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, format!("jf_session={cookie}"));
    }
    let body = match form {
        Some(form) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(form.to_string())
        }
        None => Body::empty(),
    };
    let request = builder.body(body).expect("a valid request");
    tokio::time::timeout(Duration::from_secs(10), app.oneshot(request))
        .await
        .expect("an answer in bounded time")
        .expect("the router never fails")
}

async fn text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn header_of(response: &Response<Body>, name: header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII").to_string())
        .unwrap_or_default()
}

/// Signs in with `token`; the session cookie's value.
async fn sign_in(token: &str) -> String {
    let response = send(
        app(),
        Method::POST,
        "/ui/login",
        None,
        Some(&format!("token={token}")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = header_of(&response, header::SET_COOKIE);
    let value = cookie
        .strip_prefix("jf_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("a session cookie");
    value.to_string()
}

/// The CSRF token of the session `cookie` stands for, derived as the master does.
fn csrf_of(cookie: &str) -> String {
    let key = SessionKey::of(&config("")).expect("a key");
    let session = Session::from_cookie(&key, cookie, jobfleet_common::now_ms()).expect("a valid session");
    session.csrf(&key)
}

#[tokio::test]
async fn the_sign_in_page_renders_and_pages_need_a_session() {
    let response = send(app(), Method::GET, "/ui/login", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(response).await;
    assert!(page.contains(r#"name="token""#), "{page}");
    assert!(page.contains("/ui/static/ui.css"), "{page}");
    for page in [
        "/ui",
        "/ui/jobs",
        "/ui/jobs/abc",
        "/ui/workflows/w1",
        "/ui/live/overview",
        "/ui/jobs/abc/events",
        "/ui/schedules",
        "/ui/audit",
        "/ui/batches/b1",
    ] {
        let response = send(app(), Method::GET, page, None, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(header_of(&response, header::LOCATION), "/ui/login", "{page}");
    }
    let forged = send(
        app(),
        Method::GET,
        "/ui",
        Some("61.admin.99999999999999.00"),
        None,
    )
    .await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    // Signed with the right key, but for a token the configuration does not hold.
    let key = SessionKey::of(&config("")).expect("a key");
    let gone = Principal {
        name: "gone".into(),
        role: Role::Admin,
    };
    let header = Session::start(&key, &gone, jobfleet_common::now_ms()).set_cookie(false);
    let value = header
        .strip_prefix("jf_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("a cookie value");
    let response = send(app(), Method::GET, "/ui/jobs", Some(value), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&response, header::LOCATION), "/ui/login");
}

#[tokio::test]
async fn a_bad_token_is_a_401_page_and_a_good_one_a_strict_http_only_cookie() {
    let response = send(app(), Method::POST, "/ui/login", None, Some("token=nope")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(header_of(&response, header::SET_COOKIE).is_empty());
    assert!(text(response).await.contains("not one this fleet knows"));
    let response = send(
        app(),
        Method::POST,
        "/ui/login",
        None,
        Some("token=jf_admin_token"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&response, header::LOCATION), "/ui");
    let cookie = header_of(&response, header::SET_COOKIE);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        !cookie.contains("jf_admin_token"),
        "the cookie holds no token: {cookie}"
    );
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let post = |origin: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/ui/login")
            .header(header::HOST, "fleet.example:8080")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=jf_admin_token"))
            .expect("a valid request")
    };
    let refused = app()
        .oneshot(post("https://evil.example"))
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(header_of(&refused, header::SET_COOKIE).is_empty());
    let accepted = app()
        .oneshot(post("http://fleet.example:8080"))
        .await
        .expect("an answer");
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert!(header_of(&accepted, header::SET_COOKIE).starts_with("jf_session="));
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_master_serves_https() {
    let https = app_of(config(
        "[https]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    ));
    let response = send(
        https,
        Method::POST,
        "/ui/login",
        None,
        Some("token=jf_read_token"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(header_of(&response, header::SET_COOKIE).contains("; Secure"));
}

#[tokio::test]
async fn an_action_without_the_sessions_csrf_token_is_forbidden() {
    let admin = sign_in("jf_admin_token").await;
    let other = sign_in("jf_submit_token").await;
    let wrong = format!("csrf={}", csrf_of(&other));
    for form in [
        None,
        Some(""),
        Some("csrf="),
        Some("csrf=00ff"),
        Some(wrong.as_str()),
    ] {
        for action in [
            "/ui/jobs/j1/cancel",
            "/ui/jobs/j1/delete",
            "/ui/groups/etl/pause",
            "/ui/bulk/cancel",
            "/ui/logout",
        ] {
            let response = send(app(), Method::POST, action, Some(&admin), form).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{action} {form:?}");
            assert!(text(response).await.contains("stale"), "{action} {form:?}");
        }
    }
    // Without a session at all, an action goes to the sign-in page.
    let response = send(app(), Method::POST, "/ui/jobs/j1/cancel", None, Some("csrf=x")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn actions_need_the_role_the_api_gives_their_route() {
    let actions = [
        ("/ui/jobs/j1/cancel", Role::Submit),
        ("/ui/jobs/j1/retry", Role::Admin),
        ("/ui/jobs/j1/delete", Role::Admin),
        ("/ui/groups/etl/reset", Role::Admin),
        ("/ui/groups/etl/pause", Role::Admin),
        ("/ui/groups/etl/resume", Role::Admin),
        ("/ui/bulk/cancel", Role::Admin),
        ("/ui/bulk/retry", Role::Admin),
    ];
    for (role, token) in TOKENS {
        let cookie = sign_in(token).await;
        // The filter fields matter to the bulk actions only; the others ignore them.
        let form = format!("csrf={}&status=failed", csrf_of(&cookie));
        for (action, needed) in actions {
            let response = send(app(), Method::POST, action, Some(&cookie), Some(&form)).await;
            let status = response.status();
            if role.allows(needed) {
                // Past the checks: the API's handler ran and found no Redis.
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{role} {action}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} {action}");
                assert!(text(response).await.contains(&format!("needs the {needed} role")));
            }
        }
    }
}

#[tokio::test]
async fn the_audit_page_needs_the_role_the_api_gives_the_audit_trail() {
    for (role, token) in TOKENS {
        let cookie = sign_in(token).await;
        let response = send(app(), Method::GET, "/ui/audit", Some(&cookie), None).await;
        let expected = if role == Role::Admin {
            // Past the check: the API's handler ran and found no Redis.
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(response.status(), expected, "{role}");
    }
}

#[tokio::test]
async fn signing_out_clears_the_cookie() {
    let cookie = sign_in("jf_read_token").await;
    let form = format!("csrf={}", csrf_of(&cookie));
    let response = send(app(), Method::POST, "/ui/logout", Some(&cookie), Some(&form)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&response, header::LOCATION), "/ui/login");
    let cleared = header_of(&response, header::SET_COOKIE);
    assert!(
        cleared.starts_with("jf_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn an_open_fleet_has_an_open_ui_and_the_assets_are_served() {
    let open = Config::from_toml(
        "amqp_url = \"amqp://127.0.0.1:1\"\nredis_url = \"redis://127.0.0.1:1\"\n[groups.etl.functions.echo]\n",
    )
    .expect("valid config");
    let response = send(app_of(open.clone()), Method::GET, "/ui/login", None, None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&response, header::LOCATION), "/ui");
    // An open UI's admin still needs the CSRF token.
    let response = send(
        app_of(open),
        Method::POST,
        "/ui/groups/etl/pause",
        None,
        Some("csrf=x"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    for (path, kind) in [
        ("/ui/static/ui.css", "text/css"),
        ("/ui/static/ui.js", "text/javascript"),
    ] {
        let response = send(app(), Method::GET, path, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            header_of(&response, header::CONTENT_TYPE).starts_with(kind),
            "{path}"
        );
    }
    let response = send(app(), Method::GET, "/ui/nothing/here", None, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
