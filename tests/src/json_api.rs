//! A small JSON client of one master's API for tests: each call answers the HTTP status
//! and the JSON body (`Null` when there is none), and times come back as unix ms.

use serde_json::Value;

/// One master's API.
#[derive(Debug, Clone)]
pub struct JsonApi {
    client: reqwest::Client,
    url: String,
}

impl JsonApi {
    /// The API of the master at `url` (its base URL), through `client`.
    pub fn new(client: reqwest::Client, url: impl Into<String>) -> JsonApi {
        JsonApi {
            client,
            url: url.into(),
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(self.client.post(format!("{}{path}", self.url)).json(body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.client.get(format!("{}{path}", self.url))).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(self.client.patch(format!("{}{path}", self.url)).json(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        answer(self.client.delete(format!("{}{path}", self.url))).await
    }

    /// A job's record (panics unless it exists).
    pub async fn job(&self, id: &str) -> Value {
        let (status, record) = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "GET /v1/jobs/{id}: {record}");
        record
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the master answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("a body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The unix-ms time of a record's RFC 3339 field `name` (panics when it is absent).
pub fn time_ms(record: &Value, name: &str) -> i64 {
    let text = record[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing from {record}"));
    jobfleet_api::parse_rfc3339(text).expect("an RFC 3339 time")
}
