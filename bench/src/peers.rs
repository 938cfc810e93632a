//! Peers in the same run (`--peers`): Celery in its no-loss configuration over the same
//! echo jobs, on the same RabbitMQ and Redis (`bench/peers/celery_bench.py`, run with the
//! Python of a private virtualenv that `scripts/bench --peers` installs).

use crate::measure::Throughput;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Runs the Celery peer over `jobs` echo jobs with a prefetch of `concurrency`.
pub async fn celery(
    python: &Path,
    amqp_url: &str,
    redis_url: &str,
    jobs: usize,
    concurrency: usize,
) -> Result<Throughput> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/celery_bench.py");
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .args(["--amqp-url", &celery_broker_url(amqp_url)])
        .args(["--redis-url", redis_url])
        .args(["--jobs", &jobs.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .output()
        .await
        .with_context(|| {
            format!(
                "{} (run scripts/bench --peers to install Celery)",
                python.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "the Celery peer failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let figures: Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .with_context(|| format!("the Celery peer's answer: {line}"))?;
    let seconds = figures["seconds"]
        .as_f64()
        .context("seconds in the Celery peer's answer")?;
    Ok(Throughput {
        jobs,
        elapsed: Duration::from_secs_f64(seconds),
    })
}

/// The first node of `amqp_url` as Celery's broker URL (its default vhost `/` written `//`).
fn celery_broker_url(amqp_url: &str) -> String {
    let first = amqp_url.split(',').next().unwrap_or(amqp_url).trim();
    match first.strip_suffix("/%2f").or_else(|| first.strip_suffix("/%2F")) {
        Some(base) => format!("{base}//"),
        None if first.matches('/').count() == 2 => format!("{first}//"),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::celery_broker_url;

    #[test]
    fn broker_urls_name_the_default_vhost_as_celery_writes_it() {
        assert_eq!(
            celery_broker_url("amqp://guest:guest@127.0.0.1:5672"),
            "amqp://guest:guest@127.0.0.1:5672//"
        );
        assert_eq!(
            celery_broker_url("amqp://h:5672/%2f,amqp://h:5673"),
            "amqp://h:5672//"
        );
        assert_eq!(celery_broker_url("amqp://h:5672/jobs"), "amqp://h:5672/jobs");
    }
}
