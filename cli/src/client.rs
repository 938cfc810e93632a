//! The HTTP client of the CLI: one [`MasterClient`] (one connection pool) per run, one
//! method per endpoint, typed [`ApiError`]s, and the submit/wait loop over
//! `POST /v1/jobs?wait=`. Documents come back as raw JSON (so `--json` prints what the
//! master sent); [`decode`] reads them into the `jobfleet_api` types.

use crate::error::exit;
use jobfleet_api::{
    BatchRequest, BatchResult, BulkFilter, ErrorBody, LimitsPatch, ListQuery, ScheduleRequest, SubmitRequest,
    MAX_WAIT_SECONDS,
};
use jobfleet_common::message::JobStatus;
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Seconds of one `?wait=` (the master's maximum).
pub const WAIT_SECONDS: u64 = MAX_WAIT_SECONDS;
/// How long to wait for a TCP connection to the master.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `?wait=` request may take: the wait plus room for the answer.
const WAIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(WAIT_SECONDS + 30);
/// Transient failures (unreachable, 5xx) tolerated in a row while waiting for a job.
const WAIT_RETRIES: u32 = 5;

/// Why a call to the master failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The master answered with an error (`{"error": {"kind", "message"}}`).
    #[error("{kind}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error kind.
        kind: String,
        /// The error message.
        message: String,
    },
    /// No answer: connection refused, DNS failure, timeout.
    #[error("cannot reach the master at {url}: {reason}")]
    Unreachable {
        /// The master's base URL.
        url: String,
        /// Why, in a few words (the innermost cause).
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP exchange failed in another way than a missing answer.
    #[error("unexpected answer from the master at {url}: {reason}")]
    Transport {
        /// The master's base URL.
        url: String,
        /// What failed.
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not the JSON document the API documents.
    #[error("unexpected answer from the master at {url}: {what}: {source}")]
    Undecodable {
        /// The master's base URL.
        url: String,
        /// Which document.
        what: String,
        /// Why it could not be read.
        #[source]
        source: serde_json::Error,
    },
    /// `--token` / `JOBFLEET_TOKEN` holds characters an HTTP header cannot carry.
    #[error("the token holds characters an HTTP header cannot carry (a copy-paste slip?)")]
    BadToken,
    /// An answer that breaks the API's rules in another way.
    #[error("unexpected answer from the master at {url}: {message}")]
    Protocol {
        /// The master's base URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl ApiError {
    /// The process exit status: 3 for a refused request (4xx), 4 for everything that is the
    /// master's or the network's trouble.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiError::Api { status, .. } if (400..500).contains(status) => exit::API,
            ApiError::BadToken => exit::USAGE,
            _ => exit::UNAVAILABLE,
        }
    }

    /// Whether a retry may help: the master is unreachable or answered 5xx (except a broken
    /// group, which stays broken until someone resets it).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Api { status, kind, .. } => *status >= 500 && kind != "group_broken",
            _ => false,
        }
    }

    /// Whether the master refused because the job's group is broken.
    pub fn is_group_broken(&self) -> bool {
        matches!(self, ApiError::Api { kind, .. } if kind == "group_broken")
    }
}

/// Reads an API document into its typed shape (`what` names it in the error).
pub fn decode<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, ApiError> {
    T::deserialize(value).map_err(|source| ApiError::Undecodable {
        url: String::from("(master)"),
        what: what.to_string(),
        source,
    })
}

/// Whether a job record (JSON) has a terminal status (SPEC §2).
pub fn is_terminal(record: &Value) -> bool {
    record["status"]
        .as_str()
        .and_then(|status| status.parse::<JobStatus>().ok())
        .is_some_and(JobStatus::is_terminal)
}

/// What `POST /v1/jobs` answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// 202: queued, or still running after the wait.
    Accepted {
        /// The job's id.
        id: String,
        /// Its status.
        status: String,
    },
    /// 200: the job record (ended under `?wait=`, or the original job of a repeated id).
    Record(Value),
}

/// A client of one master's HTTP API.
#[derive(Debug, Clone)]
pub struct MasterClient {
    http: reqwest::Client,
    base: Url,
}

impl MasterClient {
    /// A client for the master at `base` (an `http://` URL, possibly with a path prefix),
    /// sending `token` as a `Bearer` token with every request when given.
    pub fn new(base: Url, token: Option<&str>) -> Result<MasterClient, ApiError> {
        MasterClient::with_tls(base, token, None)
    }

    /// A client for the master at `base` (`http://` or `https://`, possibly with a path
    /// prefix) that sends `token` as a `Bearer` token when given and checks an HTTPS master's
    /// certificate with `tls` (see [`crate::commands::tls_config`]).
    pub fn with_tls(
        base: Url,
        token: Option<&str>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<MasterClient, ApiError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| ApiError::BadToken)?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("jobfleet-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(Arc::unwrap_or_clone(tls));
        }
        let http = builder.build().map_err(|source| ApiError::Transport {
            url: base.to_string(),
            reason: format!("cannot build the HTTP client: {source}"),
            source,
        })?;
        Ok(MasterClient { http, base })
    }

    /// The master's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The base URL without a trailing slash, for messages.
    fn shown(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// `base` + path segments, each escaped (ids and group names come from the user).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request; a 2xx answer yields its status and JSON body (`null` when empty).
    async fn send(&self, request: RequestBuilder) -> Result<(StatusCode, Value), ApiError> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            if body.is_empty() {
                return Ok((status, Value::Null));
            }
            let value = serde_json::from_slice(&body).map_err(|source| ApiError::Undecodable {
                url: self.shown(),
                what: format!("HTTP {status} with a body that is not JSON"),
                source,
            })?;
            return Ok((status, value));
        }
        Err(error_from_body(status, &body))
    }

    fn transport_error(&self, source: reqwest::Error) -> ApiError {
        let url = self.shown();
        if source.is_timeout() {
            let reason = "no answer in time".into();
            return ApiError::Unreachable { url, reason, source };
        }
        let reason = root_cause(&source);
        if source.is_connect() || source.is_request() || source.is_body() {
            return ApiError::Unreachable { url, reason, source };
        }
        ApiError::Transport { url, reason, source }
    }

    /// `GET` a JSON document.
    async fn get(&self, segments: &[&str]) -> Result<Value, ApiError> {
        let request = self.http.get(self.url(segments)).timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `POST` without a body.
    async fn post(&self, segments: &[&str]) -> Result<Value, ApiError> {
        let request = self.http.post(self.url(segments)).timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `POST` a JSON body.
    async fn post_json(&self, segments: &[&str], body: &impl Serialize) -> Result<Value, ApiError> {
        let request = self
            .http
            .post(self.url(segments))
            .json(body)
            .timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `POST /v1/jobs`, with `?wait=SECONDS` when `wait` is set.
    pub async fn submit(&self, request: &SubmitRequest, wait: Option<u64>) -> Result<Submitted, ApiError> {
        let mut builder = self.http.post(self.url(&["v1", "jobs"])).json(request);
        builder = match wait {
            Some(seconds) => builder.query(&[("wait", seconds)]).timeout(WAIT_REQUEST_TIMEOUT),
            None => builder.timeout(REQUEST_TIMEOUT),
        };
        let (status, body) = self.send(builder).await?;
        if status == StatusCode::ACCEPTED {
            let id = body["id"].as_str().ok_or_else(|| ApiError::Protocol {
                url: self.shown(),
                message: "a 202 answer without an id".into(),
            })?;
            let status = body["status"].as_str().unwrap_or("queued");
            return Ok(Submitted::Accepted {
                id: id.to_string(),
                status: status.to_string(),
            });
        }
        Ok(Submitted::Record(body))
    }

    /// Waits until the job `request.id` ends and returns its record, asking the master with
    /// `?wait=` again and again (a repeated id never runs a second time). Unreachable-master
    /// and 5xx answers are retried a few times with back-off.
    pub async fn wait_for_end(&self, request: &SubmitRequest) -> Result<Value, ApiError> {
        let Some(id) = request.id.as_deref() else {
            return Err(ApiError::Protocol {
                url: self.shown(),
                message: "waiting needs the job's id".into(),
            });
        };
        let mut failures = 0;
        loop {
            match self.submit(request, Some(WAIT_SECONDS)).await {
                Ok(Submitted::Record(record)) if is_terminal(&record) => return Ok(record),
                Ok(_) => failures = 0,
                // The master checks the group before it looks the id up: read the record.
                Err(e) if e.is_group_broken() => {
                    let record = self.job(id).await?;
                    if is_terminal(&record) {
                        return Ok(record);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) if e.is_transient() && failures < WAIT_RETRIES => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<Value, ApiError> {
        self.get(&["v1", "jobs", id]).await
    }

    /// `GET /v1/jobs?...`: a page of jobs.
    pub async fn jobs(&self, query: &ListQuery) -> Result<Value, ApiError> {
        let request = self
            .http
            .get(self.url(&["v1", "jobs"]))
            .query(query)
            .timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `GET /v1/jobs/{id}/logs`.
    pub async fn logs(&self, id: &str) -> Result<Value, ApiError> {
        self.get(&["v1", "jobs", id, "logs"]).await
    }

    /// `GET /v1/jobs/{id}/events`, resumed after the event `after`: the open stream, with
    /// no overall deadline (it ends when the job has ended).
    pub async fn events(&self, id: &str, after: Option<&str>) -> Result<reqwest::Response, ApiError> {
        let mut request = self.http.get(self.url(&["v1", "jobs", id, "events"]));
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        Err(error_from_body(status, &body))
    }

    /// `POST /v1/jobs/batch`: up to 1,000 jobs in one request, each one's answer in order.
    pub async fn submit_batch(&self, batch: &BatchRequest) -> Result<BatchResult, ApiError> {
        let request = self
            .http
            .post(self.url(&["v1", "jobs", "batch"]))
            .json(batch)
            .timeout(REQUEST_TIMEOUT);
        decode(&self.send(request).await?.1, "batch answer")
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<Value, ApiError> {
        self.post(&["v1", "jobs", id, "cancel"]).await
    }

    /// `POST /v1/jobs/{action}` (`cancel` or `retry`) with a bulk filter.
    pub async fn bulk(&self, action: &str, filter: &BulkFilter) -> Result<Value, ApiError> {
        self.post_json(&["v1", "jobs", action], filter).await
    }

    /// `POST /v1/schedules`.
    pub async fn create_schedule(&self, request: &ScheduleRequest) -> Result<Value, ApiError> {
        self.post_json(&["v1", "schedules"], request).await
    }

    /// `POST /v1/workflows`.
    pub async fn create_workflow(&self, request: &Value) -> Result<Value, ApiError> {
        self.post_json(&["v1", "workflows"], request).await
    }

    /// `GET /v1/workflows/{id}`.
    pub async fn workflow(&self, id: &str) -> Result<Value, ApiError> {
        self.get(&["v1", "workflows", id]).await
    }

    /// `POST /v1/workflows/{id}/cancel`.
    pub async fn cancel_workflow(&self, id: &str) -> Result<Value, ApiError> {
        self.post_json(&["v1", "workflows", id, "cancel"], &serde_json::json!({}))
            .await
    }

    /// `GET /v1/schedules`.
    pub async fn schedules(&self) -> Result<Value, ApiError> {
        self.get(&["v1", "schedules"]).await
    }

    /// `DELETE /v1/schedules/{name}`.
    pub async fn delete_schedule(&self, name: &str) -> Result<Value, ApiError> {
        let request = self
            .http
            .delete(self.url(&["v1", "schedules", name]))
            .timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `GET /v1/groups`.
    pub async fn groups(&self) -> Result<Value, ApiError> {
        self.get(&["v1", "groups"]).await
    }

    /// `GET /v1/groups/{group}`.
    pub async fn group(&self, group: &str) -> Result<Value, ApiError> {
        self.get(&["v1", "groups", group]).await
    }

    /// `POST /v1/groups/{group}/reset`.
    pub async fn reset(&self, group: &str) -> Result<Value, ApiError> {
        self.post(&["v1", "groups", group, "reset"]).await
    }

    /// `POST /v1/groups/{group}/pause` (`true`) or `/resume` (`false`).
    pub async fn set_paused(&self, group: &str, paused: bool) -> Result<Value, ApiError> {
        let action = if paused { "pause" } else { "resume" };
        self.post(&["v1", "groups", group, action]).await
    }

    /// `PATCH /v1/groups/{group}/limits`.
    pub async fn change_limits(&self, group: &str, patch: &LimitsPatch) -> Result<Value, ApiError> {
        let url = self.url(&["v1", "groups", group, "limits"]);
        let request = self.http.patch(url).json(patch).timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `DELETE /v1/groups/{group}/limits`.
    pub async fn reset_limits(&self, group: &str) -> Result<Value, ApiError> {
        let url = self.url(&["v1", "groups", group, "limits"]);
        let request = self.http.delete(url).timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `GET /v1/audit?limit=N`.
    pub async fn audit(&self, limit: u32) -> Result<Value, ApiError> {
        let mut url = self.url(&["v1", "audit"]);
        url.query_pairs_mut().append_pair("limit", &limit.to_string());
        let request = self.http.get(url).timeout(REQUEST_TIMEOUT);
        Ok(self.send(request).await?.1)
    }

    /// `GET /v1/workers`.
    pub async fn workers(&self) -> Result<Value, ApiError> {
        self.get(&["v1", "workers"]).await
    }
}

/// The error of a non-2xx answer: the API's error body, or the status and the body's start.
fn error_from_body(status: StatusCode, body: &[u8]) -> ApiError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).map(|body| (body.error.kind, body.error.message));
    let (kind, message) = parsed.unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let first = text.lines().next().unwrap_or("").trim();
        let first: String = first.chars().take(200).collect();
        (
            format!("http_{}", status.as_u16()),
            if first.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                first
            },
        )
    });
    // One line on stderr, whatever the master put in its message.
    let message = message.replace(['\n', '\r'], " ");
    ApiError::Api {
        status: status.as_u16(),
        kind,
        message,
    }
}

/// The innermost cause of an error (e.g. `Connection refused (os error 111)`), lowercased
/// at the start to read well after a colon.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_kind_and_message() {
        let e = error_from_body(
            StatusCode::NOT_FOUND,
            br#"{"error": {"kind": "not_found", "message": "unknown group \"x\"\nmore"}}"#,
        );
        assert_eq!(e.to_string(), "not_found: unknown group \"x\" more");
        assert_eq!(e.exit_code(), 3);
        let e = error_from_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>\n<p>");
        assert_eq!(e.to_string(), "http_502: <html>bad gateway</html>");
        assert_eq!(e.exit_code(), 4);
        assert!(e.is_transient());
        let broken = error_from_body(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error": {"kind": "group_broken", "message": "m"}}"#,
        );
        assert!(broken.is_group_broken() && !broken.is_transient());
    }

    #[test]
    fn path_segments_are_escaped_under_the_base_path() {
        let client = MasterClient::new(Url::parse("http://127.0.0.1:8080/fleet/").unwrap(), None).unwrap();
        assert_eq!(
            client.url(&["v1", "jobs", "a/b c"]).as_str(),
            "http://127.0.0.1:8080/fleet/v1/jobs/a%2Fb%20c"
        );
        let client = MasterClient::new(Url::parse("http://127.0.0.1:8080").unwrap(), Some("jf_x")).unwrap();
        assert_eq!(
            client.url(&["v1", "groups"]).as_str(),
            "http://127.0.0.1:8080/v1/groups"
        );
    }
}
