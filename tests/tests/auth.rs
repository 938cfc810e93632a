//! SPEC §8 API tokens against a real master, RabbitMQ and Redis: roles gate what each
//! token may do, every cancel and admin action (refused ones too) lands in a bounded audit
//! trail naming who did it, tokens never reach the log, the CLI mints and sends tokens,
//! and a master refuses to start exposed or with a bad `[auth]` table (exit 64).

use jobfleet_common::auth::token_hash_hex;
use jobfleet_tests::{binary, eventually, TestEnv};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

const VIEWER: &str = "jf_test_viewer_token";
const BILLING: &str = "jf_test_billing_token";
const OPS: &str = "jf_test_ops_token";

fn auth_table() -> String {
    jobfleet_tests::auth_table(&[
        ("viewer", "read", VIEWER),
        ("billing", "submit", BILLING),
        ("ops", "admin", OPS),
    ])
}

/// Sends a request as `token` (or none); returns the status and the JSON body.
async fn call(method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the master answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn roles_gate_the_api_and_the_audit_trail_names_who_did_what() {
    let toml = format!("audit_entries = 5\n{}", auth_table());
    let mut env = TestEnv::with_config("auth-roles", &toml);
    let master = env.start_master().await;
    env.start_worker(env.worker()).await;
    let jobs = format!("{master}/v1/jobs");
    let sleep = json!({"group": "default", "function": "sleep", "args": {"ms": 60_000}});

    let (status, body) = call(Method::POST, &jobs, None, Some(sleep.clone())).await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (status, body) = call(Method::POST, &jobs, Some(VIEWER), Some(sleep.clone())).await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, body) = call(Method::POST, &jobs, Some(BILLING), Some(sleep)).await;
    assert!(status.is_success(), "{status} {body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = format!("{jobs}/{id}");

    let (status, _) = call(Method::GET, &job, Some(VIEWER), None).await;
    assert_eq!(status, StatusCode::OK, "read sees jobs");
    let (status, _) = call(Method::POST, &format!("{job}/cancel"), Some(VIEWER), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(Method::POST, &format!("{job}/cancel"), Some(BILLING), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(Method::DELETE, &job, Some(BILLING), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "delete is admin");
    let (status, body) = call(Method::DELETE, &job, Some(OPS), None).await;
    assert!(status.is_success(), "{status} {body}");
    let reset = format!("{master}/v1/groups/default/reset");
    let (status, _) = call(Method::POST, &reset, Some(OPS), None).await;
    assert_eq!(status, StatusCode::OK);

    let audit = format!("{master}/v1/audit");
    let (status, _) = call(Method::GET, &audit, Some(BILLING), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the audit trail is admin");
    let (status, page) = call(Method::GET, &audit, Some(OPS), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seen: Vec<(String, String, String, u64)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (
                text("who"),
                text("action"),
                text("target"),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let target = format!("/v1/jobs/{id}");
    let expected = vec![
        (
            "ops".into(),
            "POST /v1/groups/{group}/reset".into(),
            "/v1/groups/default/reset".into(),
            200,
        ),
        ("ops".into(), "DELETE /v1/jobs/{id}".into(), target.clone(), 204),
        (
            "billing".into(),
            "DELETE /v1/jobs/{id}".into(),
            target.clone(),
            403,
        ),
        (
            "billing".into(),
            "POST /v1/jobs/{id}/cancel".into(),
            format!("{target}/cancel"),
            200,
        ),
        (
            "viewer".into(),
            "POST /v1/jobs/{id}/cancel".into(),
            format!("{target}/cancel"),
            403,
        ),
    ];
    assert_eq!(seen, expected, "newest first, submits and reads not audited");
    assert!(page["entries"][0]["at"].as_str().unwrap().ends_with('Z'));

    // Bounded: one more action pushes the oldest entry out.
    call(Method::POST, &reset, Some(OPS), None).await;
    let (_, page) = call(Method::GET, &format!("{audit}?limit=1000"), Some(OPS), None).await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(
        entries[4]["who"], "billing",
        "the viewer's entry, the oldest, is gone"
    );
    env.stop_workers().await;
}

#[tokio::test]
async fn tokens_never_reach_the_log_and_the_probes_stay_open() {
    let env = TestEnv::with_config("auth-log", &auth_table());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = env.config_path().with_file_name("master.log");
    let mut child = std::process::Command::new(binary("jobfleet-master"))
        .args(["--config", env.config_path().to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .env("JOBFLEET_AMQP_URL", &env.config.amqp_url)
        .env("JOBFLEET_REDIS_URL", &env.config.redis_url)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("jobfleet-master");
    let master = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(20), || async {
        let response = client.get(format!("{master}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let (status, _) = call(Method::GET, &format!("{master}/healthz"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(Method::GET, &format!("{master}/metrics"), None, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "metrics need read unless open_metrics"
    );
    let (status, _) = call(Method::GET, &format!("{master}/metrics"), Some(VIEWER), None).await;
    assert_eq!(status, StatusCode::OK);
    let wrong = "jf_a_token_nobody_configured";
    call(Method::GET, &format!("{master}/v1/jobs"), Some(wrong), None).await;
    call(
        Method::POST,
        &format!("{master}/v1/jobs/nope/cancel"),
        Some(BILLING),
        None,
    )
    .await;
    call(Method::DELETE, &format!("{master}/v1/jobs/nope"), Some(OPS), None).await;
    env.signal(child.id(), libc::SIGTERM);
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("audited action"),
        "the log has the requests: {text:.2000}"
    );
    for token in [VIEWER, BILLING, OPS, wrong] {
        assert!(!text.contains(token), "{token} is in the master's log");
    }
}

/// Runs the master binary with `toml` and `listen`; returns its exit status and stderr.
async fn master_refusal(env: &TestEnv, toml: &str, listen: &str) -> (Option<i32>, String) {
    env.refused_start("jobfleet-master", toml, &["--listen", listen])
        .await
}

#[tokio::test]
async fn a_master_refuses_to_start_exposed_or_with_a_bad_auth_table() {
    let env = TestEnv::new("auth-refusals");
    let (code, stderr) = master_refusal(&env, "", "0.0.0.0:0").await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let hash = token_hash_hex("t");
    let root = format!("[auth]\ntokens = [{{ name = \"x\", role = \"root\", sha256 = \"{hash}\" }}]\n");
    let (code, stderr) = master_refusal(&env, &root, "127.0.0.1:0").await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("unknown variant `root`"), "{stderr}");

    let short = "[auth]\ntokens = [{ name = \"x\", role = \"read\", sha256 = \"abc\" }]\n";
    let (code, stderr) = master_refusal(&env, short, "127.0.0.1:0").await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("64 hex digits"), "{stderr}");
}

#[tokio::test]
async fn the_cli_mints_a_token_and_sends_it_from_a_flag_or_the_environment() {
    let minted = std::process::Command::new(binary("jobfleet"))
        .args(["--json", "token", "new", "--name", "ci", "--role", "submit"])
        .output()
        .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let minted: Value = serde_json::from_slice(&minted.stdout).unwrap();
    let token = minted["token"].as_str().unwrap().to_string();
    let toml = format!("[auth]\ntokens = [{}]\n", minted["config_line"].as_str().unwrap());
    let mut env = TestEnv::with_config("auth-cli", &toml);
    let master = env.start_master().await;
    env.start_worker(env.worker()).await;

    // Async: the master runs on this test's runtime.
    let cli = |args: &[&str], env_token: Option<&str>| {
        let mut command = tokio::process::Command::new(binary("jobfleet"));
        command
            .arg("--master")
            .arg(&master)
            .args(args)
            .env_remove("JOBFLEET_TOKEN");
        if let Some(token) = env_token {
            command.env("JOBFLEET_TOKEN", token);
        }
        async move { command.output().await.unwrap() }
    };
    let submit = ["submit", "default", "echo", "--args", "7", "--wait"];
    let refused = cli(&submit, None).await;
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unauthorized"),
        "{refused:?}"
    );
    let with_flag = cli(&[&["--token", &token][..], &submit].concat(), None).await;
    assert!(with_flag.status.success(), "{with_flag:?}");
    let from_env = cli(&submit, Some(&token)).await;
    assert!(from_env.status.success(), "{from_env:?}");
    let audit = cli(&["audit"], Some(&token)).await;
    assert_eq!(
        audit.status.code(),
        Some(3),
        "a submit token cannot read the audit: {audit:?}"
    );
    assert!(
        String::from_utf8_lossy(&audit.stderr).contains("forbidden"),
        "{audit:?}"
    );
    env.stop_workers().await;
}
