//! [`Http`]: a reqwest client answering `(status, json)`, and the calls most tests need.

use super::*;

/// A reqwest client for one user (or none); every call answers `(status, json)` where
/// an empty body is `null` and a non-JSON body is a JSON string.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Behind API Gateway (a deployment): its own error answers are allowed.
    deployed: bool,
}

impl Http {
    /// A client of `base` sending `token` as Bearer, if any; `deployed`: `base` is API
    /// Gateway's.
    pub(crate) fn new(
        client: reqwest::Client,
        base: String,
        token: Option<String>,
        deployed: bool,
    ) -> Self {
        Self {
            client,
            base,
            token,
            deployed,
        }
    }

    /// Sends `method path` with an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let response = self.call_full(method, path, body).await;
        (response.status, response.body)
    }

    /// Like [`Self::call`], reporting a server that cannot be reached (or that dies before
    /// answering) instead of panicking: for crash tests.
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let request = self.json_request(&method, path, body);
        let response = self.exchange(&method, path, body, request).await;
        response
            .map(|r| (r.status, r.body))
            .map_err(|e| e.to_string())
    }

    /// `method path` with an optional JSON body, keeping the response headers.
    pub async fn call_full(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> HttpResponse {
        let request = self.json_request(&method, path, body);
        self.exchange(&method, path, body, request)
            .await
            .expect("the HTTP request reaches the server and its body is readable")
    }

    /// `method path` with the token, if any.
    fn request(&self, method: &reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// [`Self::request`] with an optional JSON body.
    fn json_request(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let request = self.request(method, path);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
    }

    /// Sends `request` (`method path` carrying `body`, when JSON) and holds the exchange
    /// to the protocol documents.
    async fn exchange(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request: reqwest::RequestBuilder,
    ) -> Result<HttpResponse, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let answer = body_value(&response.bytes().await?);
        self.checked(method, path, body, status, &answer);
        Ok(HttpResponse {
            status,
            headers,
            body: answer,
        })
    }

    /// Holds an exchange to docs/openapi.yaml (see [`schema`]), failing the test otherwise.
    fn checked(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
        status: u16,
        answer: &Value,
    ) {
        let deployed = self.deployed;
        if let Err(e) =
            schema::check_exchange(method.as_str(), path, body, status, answer, deployed)
        {
            panic!("{e}");
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// `method path` with raw bytes and a content type (malformed or oversized bodies).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl Into<Vec<u8>>,
        content_type: &str,
    ) -> (u16, Value) {
        let body = body.into();
        let sent = serde_json::from_slice::<Value>(&body).ok();
        let request = self
            .request(&method, path)
            .header("Content-Type", content_type)
            .body(body);
        let response = self
            .exchange(&method, path, sent.as_ref(), request)
            .await
            .expect("the HTTP request reaches the server and its body is readable");
        (response.status, response.body)
    }

    /// Creates (or finds) the direct conversation with `other`; answers the conversation.
    pub async fn create_direct(&self, other: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/conversations",
                &json!({"type": "direct", "members": [other]}),
            )
            .await;
        assert!(
            status == 200 || status == 201,
            "create direct with {other}: {status} {body}"
        );
        body
    }

    /// Creates a group; answers the conversation.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let (status, body) = self
            .post(
                "/v1/conversations",
                &json!({"type": "group", "name": name, "members": members}),
            )
            .await;
        assert_eq!(status, 201, "create group {name:?}: {body}");
        body
    }

    /// `GET /v1/conversations/{id}`, asserting 200.
    pub async fn conversation(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/conversations/{id}")).await;
        assert_eq!(status, 200, "GET conversation {id}: {body}");
        body
    }

    /// `GET /v1/conversations/{id}/messages?{query}`, asserting 200.
    pub async fn messages(&self, id: &str, query: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/conversations/{id}/messages?{query}"))
            .await;
        assert_eq!(status, 200, "GET messages {id}?{query}: {body}");
        body
    }

    /// `POST /v1/conversations/{id}/messages` with a text message.
    pub async fn send_message(
        &self,
        id: &str,
        client_message_id: &str,
        text: &str,
    ) -> (u16, Value) {
        self.post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({
                "clientMessageId": client_message_id,
                "content": {"type": "text", "text": text},
                "replyTo": null,
            }),
        )
        .await
    }

    /// `POST /v1/conversations/{id}/members`.
    pub async fn add_members(&self, id: &str, users: &[&str]) -> (u16, Value) {
        self.post(
            &format!("/v1/conversations/{id}/members"),
            &json!({"userIds": users}),
        )
        .await
    }

    /// `DELETE /v1/conversations/{id}/members/{user}`.
    pub async fn remove_member(&self, id: &str, user: &str) -> (u16, Value) {
        self.delete(&format!("/v1/conversations/{id}/members/{user}"))
            .await
    }

    /// `POST /v1/devices`, asserting 201.
    pub async fn register_device(&self, device: &str, platform: &str, token: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/devices",
                &json!({"deviceId": device, "platform": platform, "token": token}),
            )
            .await;
        assert_eq!(status, 201, "register device {device}: {body}");
        body
    }
}

/// An HTTP answer with its headers (`Retry-After`, `Allow`...).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`null` when empty, a JSON string when not JSON).
    pub body: Value,
}

impl HttpResponse {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(status, body)`, the shape the assertion helpers take.
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.body.clone())
    }
}

/// An empty body is `null`; a body that is not JSON is a JSON string.
pub(crate) fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}
