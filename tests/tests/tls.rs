//! TLS end to end (SPEC §8): a private RabbitMQ with a TLS listener and a TLS-only Redis,
//! both requiring a client certificate, a master serving HTTPS, all with a CA the test
//! makes; the CLI with `--ca-file`. A wrong CA, a missing client certificate and unusable
//! PEM files are refused with a clear error.

use jobfleet_common::client::{amqp_pool, open_channel, ClientError};
use jobfleet_common::config::Config;
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::message::JobMessage;
use jobfleet_common::tls::TlsConfig;
use jobfleet_common::topology::Topology;
use jobfleet_tests::pki::TestPki;
use jobfleet_tests::private::{PrivateRabbit, PrivateRedis};
use jobfleet_tests::{binary, TestEnv};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Runs `program ARGS...` to its end (at most a minute) with `env` and none of the
/// JOBFLEET_* settings of this process.
async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = tokio::process::Command::new(binary(program))
        .args(args)
        .env_remove("JOBFLEET_MASTER")
        .env_remove("JOBFLEET_CA_FILE")
        .env_remove("JOBFLEET_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("{program} ends within a minute"))
        .expect("the program runs")
}

/// Runs `jobfleet ARGS...` to its end.
async fn jobfleet(args: &[&str]) -> Output {
    run("jobfleet", args, &[]).await
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fleet whose broker, Redis and master speak only TLS, with the CA of `pki`; its
/// clients trust that CA and present a client certificate. Fields drop in order: the
/// fleet's cleanup runs while the servers still do.
struct TlsFleet {
    env: TestEnv,
    _rabbit: PrivateRabbit,
    _redis: PrivateRedis,
    pki: TestPki,
}

impl TlsFleet {
    fn start(name: &str) -> TlsFleet {
        let pki = TestPki::generate();
        let rabbit = PrivateRabbit::start_tls(&pki);
        let redis = PrivateRedis::start_tls(&pki);
        let toml = format!("{}{}", pki.tls_toml(&pki.ca()), pki.https_toml());
        let env = TestEnv::with_services(name, &toml, &rabbit.tls_url(), &redis.url());
        TlsFleet {
            env,
            _rabbit: rabbit,
            _redis: redis,
            pki,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_over_amqps_rediss_and_https() {
    let mut fleet = TlsFleet::start("tls");
    let (env, pki) = (&mut fleet.env, &fleet.pki);
    env.spawn_worker_process(&[]);
    let (_, master) = env.spawn_master_process().await;
    assert!(master.starts_with("https://"), "{master}");
    let ca = pki.ca();
    let ca = ca.to_str().expect("utf-8");

    let submitted = jobfleet(&[
        "--master",
        &master,
        "--ca-file",
        ca,
        "--json",
        "submit",
        "default",
        "echo",
        "--args",
        r#"{"over": "tls"}"#,
        "--wait",
    ])
    .await;
    assert!(submitted.status.success(), "{submitted:?}");
    let record: Value = serde_json::from_slice(&submitted.stdout).expect("a JSON record");
    assert_eq!(record["status"], "finished", "{record}");
    assert_eq!(record["result"], json!({"over": "tls"}));

    // JOBFLEET_CA_FILE does what --ca-file does.
    let id = record["id"].as_str().expect("an id");
    let status = run(
        "jobfleet",
        &["--master", &master, "--json", "status", id],
        &[("JOBFLEET_CA_FILE", ca)],
    )
    .await;
    assert!(status.status.success(), "{status:?}");

    // The in-process clients take the same [tls] settings: a producer over amqps + rediss.
    let producer = env.producer().await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let job = JobMessage::new("default", "echo", json!(7)).with_id("tls-producer-1");
    producer.publish(&job).await.expect("publish over amqps");
    let result = tokio::time::timeout(Duration::from_secs(30), subscriber.next())
        .await
        .expect("a result in time")
        .expect("a result");
    assert_eq!(
        (result.id.as_str(), &result.result),
        ("tls-producer-1", &Some(json!(7)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_a_missing_client_certificate_is_refused_clearly() {
    let mut fleet = TlsFleet::start("tls-refused");
    let (env, pki) = (&mut fleet.env, &fleet.pki);
    let master = env.start_master().await;

    // The CLI with another CA, or with the system roots, does not trust the master.
    let other = pki.other_ca();
    for args in [
        vec![
            "--master",
            &master,
            "--ca-file",
            other.to_str().expect("utf-8"),
            "groups",
        ],
        vec!["--master", &master, "groups"],
    ] {
        let refused = jobfleet(&args).await;
        assert_eq!(refused.status.code(), Some(4), "{refused:?}");
        let said = stderr(&refused);
        assert!(
            said.starts_with("jobfleet: cannot reach the master at https://")
                && said.contains("invalid peer certificate: UnknownIssuer"),
            "{said}"
        );
    }

    // Clients with another CA do not trust the broker or Redis.
    let mut config = env.config.clone();
    config.tls.ca_file = Some(pki.other_ca());
    let error = broker_error(&config).await;
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    let error = redis_error(&config).await;
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );

    // Without a client certificate the broker and Redis refuse the client. In TLS 1.3 the
    // server's alert comes after the client's side of the handshake, so the client sees
    // either the alert or the connection reset that follows it.
    config.tls = TlsConfig::trusting(Some(pki.ca()));
    for error in [broker_error(&config).await, redis_error(&config).await] {
        assert!(
            error.contains("received fatal alert: CertificateRequired")
                || error.contains("Connection reset by peer"),
            "{error}"
        );
    }
}

/// What opening a channel on the broker of `config` fails with.
async fn broker_error(config: &Config) -> String {
    let pool = amqp_pool(config.amqp_endpoint(), 1, "tls-test").expect("pool");
    let error = open_channel(&pool, false).await.expect_err("the broker refuses");
    assert!(matches!(error, ClientError::Pool(_)), "{error:?}");
    error.to_string()
}

/// What a PING to the Redis of `config` fails with.
async fn redis_error(config: &Config) -> String {
    let coordinator = Coordinator::from_config(config, Topology::new("tls-refused")).expect("pool");
    coordinator.ping().await.expect_err("redis refuses").to_string()
}

/// Writes a fleet file with `toml` and runs `program --config FILE` with `args`.
async fn start_with(program: &str, dir: &Path, toml: &str, args: &[&str]) -> Output {
    let path = dir.join(format!("{program}.toml"));
    std::fs::write(&path, toml).expect("config file");
    let config = path.to_str().expect("utf-8 path");
    run(program, &[&["--config", config], args].concat(), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_files_stop_the_binaries_at_start_with_exit_64() {
    let pki = TestPki::generate();
    let dir = pki.dir();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("file");
    let missing = dir.join("missing.pem");
    let quoted = |path: &Path| format!("{path:?}");
    let cases = [
        (
            format!("[tls]\nca_file = {}\n", quoted(&missing)),
            format!("cannot read [tls] ca_file {}", missing.display()),
        ),
        (
            format!("[tls]\nca_file = {}\n", quoted(&not_pem)),
            format!("[tls] ca_file {} holds no PEM certificate", not_pem.display()),
        ),
        (
            format!("[tls]\ncert_file = {}\n", quoted(&pki.client_cert())),
            "[tls] cert_file and key_file go together".to_string(),
        ),
        (
            format!(
                "[tls]\ncert_file = {}\nkey_file = {}\n",
                quoted(&pki.client_cert()),
                quoted(&pki.client_cert())
            ),
            format!(
                "[tls] key_file {} holds no PEM private key",
                pki.client_cert().display()
            ),
        ),
    ];
    for (toml, reason) in &cases {
        for program in ["jobfleet-worker", "jobfleet-master"] {
            let output = start_with(
                program,
                dir,
                toml,
                &["--listen", "127.0.0.1:0"][..listen_args(program)],
            )
            .await;
            assert_eq!(
                output.status.code(),
                Some(64),
                "{program} with {toml}: {output:?}"
            );
            assert!(
                stderr(&output).contains(reason.as_str()),
                "{program}: {:?}",
                stderr(&output)
            );
        }
    }

    // A master whose [https] key is not a key.
    let toml = format!(
        "[https]\ncert_file = {}\nkey_file = {}\n",
        quoted(&pki.server_cert()),
        quoted(&not_pem)
    );
    let output = start_with("jobfleet-master", dir, &toml, &["--listen", "127.0.0.1:0"]).await;
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let reason = format!("[https] key_file {} holds no PEM private key", not_pem.display());
    assert!(stderr(&output).contains(&reason), "{:?}", stderr(&output));

    // The CLI with an unreadable --ca-file: a usage error.
    let output = jobfleet(&["--ca-file", missing.to_str().expect("utf-8"), "groups"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        stderr(&output).starts_with(&format!("jobfleet: cannot read --ca-file {}", missing.display())),
        "{:?}",
        stderr(&output)
    );
}

/// How many of `--listen 127.0.0.1:0` a program takes (the worker has no `--listen`).
fn listen_args(program: &str) -> usize {
    if program == "jobfleet-master" {
        2
    } else {
        0
    }
}
