//! The workload's HTTP client of the masters' API: each request goes to the next master in
//! turn and moves on to the others when one does not answer (killed, paused), as a client
//! behind a load balancer would see it.

use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long one request may take before the master counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// An HTTP answer: status and JSON body (`Null` when there is none).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// The masters tried first that did not answer, with why (a request they may still
    /// have acted on).
    pub unanswered: Vec<String>,
}

impl Answer {
    /// The `error.kind` of an error answer, or `""`.
    pub fn kind(&self) -> String {
        self.body["error"]["kind"].as_str().unwrap_or("").to_string()
    }
}

/// The masters' API.
#[derive(Debug)]
pub struct Api {
    client: reqwest::Client,
    masters: Vec<String>,
    next: AtomicUsize,
}

impl Api {
    /// A client of the masters at `masters` (base URLs).
    pub fn new(masters: Vec<String>) -> Api {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(4)
            .build()
            .expect("http client");
        Api {
            client,
            masters,
            next: AtomicUsize::new(0),
        }
    }

    /// Sends a request built by `request` (given the client and a master's base URL) to
    /// each master in turn until one answers; `Err` says why none did.
    async fn send(
        &self,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, String> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut errors = Vec::new();
        for offset in 0..self.masters.len() {
            let base = &self.masters[(first + offset) % self.masters.len()];
            match request(&self.client, base).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.json::<Value>().await.unwrap_or(Value::Null);
                    return Ok(Answer {
                        status,
                        body,
                        unanswered: errors,
                    });
                }
                Err(e) => errors.push(format!("{base}: {}", describe(&e))),
            }
        }
        Err(errors.join("; "))
    }

    /// `POST /v1/jobs` with `body`.
    pub async fn submit(&self, body: &Value) -> Result<Answer, String> {
        self.send(|client, base| client.post(format!("{base}/v1/jobs")).json(body))
            .await
    }

    /// `POST /v1/workflows` with `body`.
    pub async fn submit_workflow(&self, body: &Value) -> Result<Answer, String> {
        self.send(|client, base| client.post(format!("{base}/v1/workflows")).json(body))
            .await
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<Answer, String> {
        self.send(|client, base| client.post(format!("{base}/v1/jobs/{id}/cancel")))
            .await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn get(&self, id: &str) -> Result<Answer, String> {
        self.send(|client, base| client.get(format!("{base}/v1/jobs/{id}")))
            .await
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn delete(&self, id: &str) -> Result<Answer, String> {
        self.send(|client, base| client.delete(format!("{base}/v1/jobs/{id}")))
            .await
    }
}

/// A short reason for a failed request (reqwest's Display hides the cause).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        text
    }
}
