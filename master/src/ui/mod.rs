//! The web UI of SPEC §11: server-rendered pages under `/ui`, signed in with an API token
//! into a session cookie ([`session`]), acting through the API's own handlers ([`actions`]).
//!
//! Templates (minijinja, auto-escaping every value) and the one stylesheet and script are
//! compiled into the binary: the UI fetches nothing from outside the master.

pub mod actions;
pub mod pages;
pub mod session;

use crate::http::error::ApiError;
use crate::state::SharedState;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{AutoEscape, Environment, Value};
use std::sync::LazyLock;

/// The templates, parsed once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Every template is HTML: escape every value, whatever the template's name.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("login.html", include_str!("templates/login.html")),
        ("message.html", include_str!("templates/message.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("overview_live.html", include_str!("templates/overview_live.html")),
        ("jobs.html", include_str!("templates/jobs.html")),
        ("job.html", include_str!("templates/job.html")),
        ("workflow.html", include_str!("templates/workflow.html")),
        ("batch.html", include_str!("templates/batch.html")),
        ("schedules.html", include_str!("templates/schedules.html")),
        ("audit.html", include_str!("templates/audit.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "a UI template does not parse");
        }
    }
    env
});

/// The UI's routes (served outside the API's Bearer guard: pages check the session).
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/live/overview", get(pages::overview_live))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/jobs/{id}/events", get(pages::job_events))
        .route("/ui/workflows/{id}", get(pages::workflow))
        .route("/ui/batches/{id}", get(pages::batch))
        .route("/ui/schedules", get(pages::schedules))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/jobs/{id}/{action}", post(actions::job))
        .route("/ui/bulk/{action}", post(actions::bulk))
        .route("/ui/groups/{group}/{action}", post(actions::group))
        .route("/ui/static/ui.css", get(stylesheet))
        .route("/ui/static/ui.js", get(script))
        .route("/ui/{*rest}", get(not_found).post(not_found))
}

/// Renders template `name` with `context` as an HTML answer of `status`.
pub fn render(status: StatusCode, name: &str, context: Value) -> Response {
    let page = TEMPLATES
        .get_template(name)
        .and_then(|template| template.render(context));
    match page {
        Ok(html) => (status, no_store(), Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a UI page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

/// Pages show live state: never cached.
fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// A page that only says what happened: `title` and `message`, answered with `status`.
pub fn message(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        "message.html",
        minijinja::context! { title, message, status => status.as_u16() },
    )
}

/// The page of an API error: its status and message.
pub fn api_error(error: ApiError) -> Response {
    let (status, detail) = error.into_detail();
    let title = status.canonical_reason().unwrap_or("Error");
    message(status, title, &detail.message)
}

/// A `/ui/...` path that names no page.
async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found", "No such page.")
}

/// The stylesheet (light and dark).
async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("static/ui.css"))
}

/// The script that keeps the overview live (the pages work without it).
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("static/ui.js"))
}

/// A vendored asset.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
