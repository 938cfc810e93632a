//! The web UI (SPEC §11) in a real headless Chromium, driven through chromedriver with
//! fantoccini against a real master, worker, RabbitMQ and Redis: sign in, the overview
//! lists the groups, a job submitted over the API appears in the list and its page shows
//! its result, a running `sleep` is canceled from its page (and audited), the overview
//! follows a paused group without a reload and resumes it, a read session sees no action
//! controls, args holding markup render as text, and a running job's page follows its log
//! lines live. Every page is saved as a screenshot
//! at 1280 px and 390 px wide under `target/ui/` for review.
//!
//! Needs `chromium` and `chromedriver` (the Debian packages `chromium` and
//! `chromium-driver`, installed by `scripts/services`).

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use jobfleet_tests::{eventually, TestEnv};
use jobfleet_worker::{JobContext, JobError};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const VIEWER: &str = "jf_ui_viewer_token";
const OPS: &str = "jf_ui_ops_token";
/// How long any element may take to appear (generous: two cores shared with builds).
const WAIT: Duration = Duration::from_secs(30);

/// Two tokens, and the `default` group with the built-ins used here and `report`.
fn fleet() -> String {
    let auth = jobfleet_tests::auth_table(&[("viewer", "read", VIEWER), ("ops", "admin", OPS)]);
    format!(
        "{auth}[groups.default.functions.echo]\n[groups.default.functions.sleep]\n\
         [groups.default.functions.report]\n\
         [schedules.nightly-report]\ncron = \"0 2 * * *\"\ngroup = \"default\"\nfunction = \"echo\"\n\
         args = {{ full = true }}\ntimezone = \"Europe/Paris\"\n"
    )
}

/// Logs `lines` lines `pause_ms` apart, then reports 100 % and answers how many.
async fn report(args: Value) -> Result<Value, JobError> {
    let context = JobContext::current();
    let lines = args["lines"].as_u64().unwrap_or(3);
    for i in 0..lines {
        context.log(&format!("line {i}"));
        tokio::time::sleep(Duration::from_millis(args["pause_ms"].as_u64().unwrap_or(0))).await;
    }
    context.progress(100.0, Some("done"));
    Ok(json!({ "lines": lines }))
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; run scripts/services)");
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session (in dark mode if `dark`), once chromedriver answers.
    async fn browser(&self, dark: bool) -> Client {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--hide-scrollbars",
        ];
        if dark {
            args.push("--force-dark-mode");
        }
        let mut options = json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        eventually(WAIT, || {
            let capabilities = capabilities.clone();
            async move {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&self.url)
                    .await
                    .ok()
            }
        })
        .await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `target/ui/`.
fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui");
    std::fs::create_dir_all(&dir).expect("target/ui");
    dir
}

/// Saves the page as `name-1280.png` and `name-390.png`, then goes back to 1280 px.
async fn shoot(browser: &Client, name: &str) {
    for (width, height) in [(390, 844), (1280, 900)] {
        browser.set_window_size(width, height).await.expect("resize");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(shots_dir().join(format!("{name}-{width}.png")), png).expect("write screenshot");
    }
}

/// Opens `url` and waits for the element `css`; its text.
async fn open(browser: &Client, url: &str, css: &str) -> String {
    browser.goto(url).await.expect("navigate");
    element_text(browser, css).await
}

/// Waits for the element `css`; its text.
async fn element_text(browser: &Client, css: &str) -> String {
    let element = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    element.text().await.expect("text")
}

/// The element `css`'s text if it is there now (`None` while a page loads).
async fn try_text(browser: &Client, css: &str) -> Option<String> {
    browser.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Signs in on the login page with `token`, landing on the overview: by keyboard alone
/// (the field has the focus; Enter submits the form).
async fn sign_in(browser: &Client, master: &str, token: &str) {
    open(browser, &format!("{master}/ui/login"), "#token").await;
    let focused = browser.active_element().await.expect("a focused element");
    assert_eq!(focused.attr("id").await.expect("id").as_deref(), Some("token"));
    focused
        .send_keys(&format!("{token}\u{E007}"))
        .await
        .expect("type the token and Enter");
    element_text(browser, "#groups").await;
}

/// Signs out with the header's button, landing on the login page.
async fn sign_out(browser: &Client) {
    let button = browser
        .find(Locator::Css("form[action='/ui/logout'] button"))
        .await
        .expect("a sign-out button");
    button.click().await.expect("click");
    element_text(browser, "#token").await;
}

/// The master's API as `OPS`.
struct Api {
    client: reqwest::Client,
    master: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.master))
            .bearer_auth(OPS);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the master answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
        body
    }

    async fn submit(&self, function: &str, args: Value) -> String {
        let body = json!({"group": "default", "function": function, "args": args});
        let accepted = self.call(reqwest::Method::POST, "/v1/jobs", Some(body)).await;
        accepted["id"].as_str().expect("an id").to_string()
    }

    /// Waits until job `id` is `status`.
    async fn until(&self, id: &str, status: &str) {
        eventually(WAIT, || async {
            let job = self
                .call(reqwest::Method::GET, &format!("/v1/jobs/{id}"), None)
                .await;
            (job["status"] == status).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn the_ui_in_a_real_browser() {
    let mut env = TestEnv::with_config("ui", &fleet());
    let master = env.start_master().await;
    env.start_worker(env.worker().function("report", report)).await;
    let api = Api {
        client: env.http_client(),
        master: master.clone(),
    };
    let echo = api
        .submit("echo", json!({"greeting": "hello from the ui test"}))
        .await;
    let markup = api
        .submit("echo", json!({"note": "<script>alert(1)</script>"}))
        .await;
    api.until(&echo, "finished").await;
    api.until(&markup, "finished").await;
    let flow = json!({"steps": [
        {"name": "first", "group": "default", "function": "echo", "args": {"n": 1}},
        {"name": "second", "group": "default", "function": "echo", "args": {"n": 2}, "after": ["first"]}
    ]});
    let workflow = api.call(reqwest::Method::POST, "/v1/workflows", Some(flow)).await;
    let workflow = workflow["id"].as_str().expect("a workflow id").to_string();

    let driver = Driver::start();
    let browser = driver.browser(false).await;

    // Pages need a session: the overview sends a stranger to the login page.
    open(&browser, &format!("{master}/ui"), "#token").await;
    shoot(&browser, "login").await;
    sign_in(&browser, &master, OPS).await;
    let groups = element_text(&browser, "#groups").await;
    assert!(groups.contains("default"), "{groups}");
    element_text(&browser, "#workers").await;
    shoot(&browser, "overview").await;
    // The first Tab lands on the skip link.
    let body = browser.find(Locator::Css("body")).await.expect("body");
    body.send_keys("\u{E004}").await.expect("Tab");
    let focused = browser.active_element().await.expect("a focused element");
    assert_eq!(focused.text().await.expect("text"), "Skip to content");

    let list = open(&browser, &format!("{master}/ui/jobs"), "#jobs").await;
    assert!(list.contains(&echo), "{list}");
    shoot(&browser, "jobs").await;
    browser
        .find(Locator::LinkText(&echo))
        .await
        .expect("a link to the job")
        .click()
        .await
        .expect("click");
    let result = element_text(&browser, "#result").await;
    assert!(result.contains("hello from the ui test"), "{result}");
    assert_eq!(element_text(&browser, "#job-status").await, "finished");
    shoot(&browser, "job").await;

    // Markup in args is text: shown as typed, never run.
    let args = open(&browser, &format!("{master}/ui/jobs/{markup}"), "#args").await;
    assert!(args.contains("<script>alert(1)</script>"), "{args}");
    let scripts = browser
        .execute("return document.querySelectorAll('main script').length;", vec![])
        .await
        .expect("script");
    assert_eq!(scripts, json!(0));
    assert!(browser.get_alert_text().await.is_err(), "no alert opened");

    // A running job's page follows its log lines live, and shows its end by itself.
    let reporting = api.submit("report", json!({"lines": 60, "pause_ms": 150})).await;
    api.until(&reporting, "started").await;
    open(&browser, &format!("{master}/ui/jobs/{reporting}"), "#live-note").await;
    let first = try_text(&browser, "#logs").await.unwrap_or_default();
    assert!(!first.contains("line 20"), "{first}");
    eventually(WAIT, || async {
        let logs = try_text(&browser, "#logs").await?;
        let status = try_text(&browser, "#job-status").await?;
        (logs.contains("line 20") && status == "started").then_some(())
    })
    .await;
    shoot(&browser, "job-live").await;
    let result = eventually(WAIT, || async { try_text(&browser, "#result").await }).await;
    assert!(result.contains("\"lines\": 60"), "{result}");
    let logs = element_text(&browser, "#logs").await;
    assert!(logs.contains("line 59"), "{logs}");

    let steps = open(&browser, &format!("{master}/ui/workflows/{workflow}"), "#steps").await;
    assert!(steps.contains("first") && steps.contains("second"), "{steps}");
    shoot(&browser, "workflow").await;
    let batch = json!({
        "jobs": [
            {"group": "default", "function": "echo", "args": {"part": 1}},
            {"group": "default", "function": "echo", "args": {"part": 2}}
        ],
        "on_complete": {"group": "default", "function": "echo"}
    });
    let batch = api.call(reqwest::Method::POST, "/v1/batches", Some(batch)).await;
    let batch = batch["id"].as_str().expect("a batch id").to_string();
    eventually(WAIT, || async {
        let shown = api
            .call(reqwest::Method::GET, &format!("/v1/batches/{batch}"), None)
            .await;
        (shown["status"] == "finished").then_some(())
    })
    .await;
    let counts = open(&browser, &format!("{master}/ui/batches/{batch}"), "#counts").await;
    assert!(
        counts.contains("Total\n2") || counts.contains("Total 2"),
        "{counts}"
    );
    assert!(element_text(&browser, "#callback-h")
        .await
        .contains("On complete"));
    shoot(&browser, "batch").await;

    // Cancel a running sleep from its page.
    let sleep = api.submit("sleep", json!({"ms": 60_000})).await;
    api.until(&sleep, "started").await;
    open(&browser, &format!("{master}/ui/jobs/{sleep}"), "#cancel").await;
    shoot(&browser, "job-running").await;
    browser
        .find(Locator::Id("cancel"))
        .await
        .expect("cancel")
        .click()
        .await
        .expect("click");
    eventually(WAIT, || async {
        let status = try_text(&browser, "#job-status").await?;
        (status == "canceled").then_some(())
    })
    .await;
    api.until(&sleep, "canceled").await;
    let audit = api.call(reqwest::Method::GET, "/v1/audit", None).await;
    let cancel = &audit["entries"][0];
    assert_eq!(cancel["who"], "ops", "{audit}");
    assert_eq!(cancel["action"], "POST /v1/jobs/{id}/cancel (web UI)", "{audit}");
    assert_eq!(cancel["target"], format!("/v1/jobs/{sleep}/cancel"), "{audit}");

    // A filtered list's bulk retry: the canceled sleep runs again as a new job.
    open(
        &browser,
        &format!("{master}/ui/jobs?status=canceled"),
        "#bulk-retry",
    )
    .await;
    shoot(&browser, "jobs-filtered").await;
    browser
        .find(Locator::Id("bulk-retry"))
        .await
        .expect("retry")
        .click()
        .await
        .expect("click");
    let done = element_text(&browser, "#message").await;
    assert_eq!(done, "1 of 1 matching jobs retried as new jobs.");
    let body = json!({"function": "sleep", "status": "queued"});
    api.call(reqwest::Method::POST, "/v1/jobs/cancel", Some(body))
        .await;
    let body = json!({"function": "sleep", "status": "started"});
    api.call(reqwest::Method::POST, "/v1/jobs/cancel", Some(body))
        .await;

    // The audit trail names the UI's actions; the schedules page the config file's.
    let trail = open(&browser, &format!("{master}/ui/audit"), "#audit").await;
    assert!(trail.contains("(web UI)") && trail.contains("ops"), "{trail}");
    shoot(&browser, "audit").await;
    let schedules = open(&browser, &format!("{master}/ui/schedules"), "#schedules").await;
    assert!(
        schedules.contains("nightly-report") && schedules.contains("0 2 * * *"),
        "{schedules}"
    );
    shoot(&browser, "schedules").await;

    // The overview follows the fleet without a reload, and its buttons act on groups.
    open(&browser, &format!("{master}/ui"), "#groups").await;
    api.call(reqwest::Method::POST, "/v1/groups/default/pause", None)
        .await;
    let paused = eventually(WAIT, || async {
        let groups = try_text(&browser, "#groups").await?;
        groups.contains("paused").then_some(groups)
    })
    .await;
    assert!(paused.contains("Resume"), "{paused}");
    shoot(&browser, "overview-paused").await;
    let resume = Locator::Css("form[action='/ui/groups/default/resume'] button");
    browser
        .find(resume)
        .await
        .expect("a resume button")
        .click()
        .await
        .expect("click");
    eventually(WAIT, || async {
        let groups = try_text(&browser, "#groups").await?;
        (groups.contains("ok") && groups.contains("Pause")).then_some(())
    })
    .await;
    let group = api.call(reqwest::Method::GET, "/v1/groups/default", None).await;
    assert_eq!(group["paused"], false, "{group}");

    // A read session sees the same pages without a single action control.
    sign_out(&browser).await;
    sign_in(&browser, &master, VIEWER).await;
    let overview_forms = browser.find_all(Locator::Css("main form")).await.expect("query");
    assert!(overview_forms.is_empty(), "a read session sees no group actions");
    let audit_links = browser.find_all(Locator::LinkText("Audit")).await.expect("query");
    assert!(audit_links.is_empty(), "a read session has no audit link");
    let running = api.submit("sleep", json!({"ms": 60_000})).await;
    api.until(&running, "started").await;
    open(&browser, &format!("{master}/ui/jobs?status=canceled"), "#jobs").await;
    let bulk = browser
        .find_all(Locator::Css("main form[method='post']"))
        .await
        .expect("query");
    assert!(bulk.is_empty(), "a read session sees no bulk actions");
    for id in [&echo, &running] {
        open(&browser, &format!("{master}/ui/jobs/{id}"), "#job-status").await;
        let buttons = browser
            .find_all(Locator::Css("main button"))
            .await
            .expect("query");
        assert!(buttons.is_empty(), "a read session sees no buttons on {id}");
    }
    shoot(&browser, "job-read-only").await;
    api.call(reqwest::Method::POST, &format!("/v1/jobs/{running}/cancel"), None)
        .await;

    browser.close().await.expect("close the browser");

    // Dark mode follows the system's preference.
    let dark = driver.browser(true).await;
    sign_in(&dark, &master, VIEWER).await;
    let prefers = dark
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(prefers, json!(true), "a dark browser");
    shoot(&dark, "overview-dark").await;
    open(&dark, &format!("{master}/ui/jobs/{echo}"), "#result").await;
    shoot(&dark, "job-dark").await;
    dark.close().await.expect("close the browser");
}
