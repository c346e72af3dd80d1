//! An identity provider for tests: a JWKS server on loopback whose answer the test sets,
//! and signing keys with their JWKs (fixtures made with openssl: `tests/keys/*.der`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the server answers next.
#[derive(Clone)]
pub enum Answer {
    /// 200 with this body.
    Json(String),
    /// This status, empty body.
    Status(u16),
    /// 200 with `n` bytes, chunked (no length announced).
    Huge(usize),
    /// A 302 to this location.
    Redirect(String),
    /// Nothing until [`Jwks::release`], then this body.
    Held(String),
}

pub struct Jwks {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

impl Jwks {
    pub async fn start(answer: Answer) -> Self {
        Self::start_on(0, answer).await
    }

    /// The server on a given port of 127.0.0.1 (one a deployment was told of).
    pub async fn start_on(port: u16, answer: Answer) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (a, r, n) = (answer.clone(), requests.clone(), release.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (a, r, n) = (a.clone(), r.clone(), n.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let answer = a.lock().unwrap().clone();
                    let response = match answer {
                        Answer::Json(body) => ok(&body),
                        Answer::Status(code) => format!(
                            "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        ),
                        Answer::Redirect(to) => format!(
                            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        ),
                        Answer::Huge(n) => {
                            let mut out = String::from(
                                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                            );
                            let chunk = "a".repeat(8192);
                            for _ in 0..n.div_ceil(8192) {
                                out.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
                            }
                            out.push_str("0\r\n\r\n");
                            out
                        }
                        Answer::Held(body) => {
                            n.notified().await;
                            ok(&body)
                        }
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
            answer,
            requests,
            release,
        }
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Lets one held answer go.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A signing key of a test provider.
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// The public half as a JWK (with `kid`), as a provider publishes it.
    pub jwk: Value,
}

impl Key {
    /// `name` is a fixture: `rsa-a`, `rsa-b` (RS256), `ec-a` (ES256), `ec-p384`
    /// (ES384). RSA keys are PKCS#1, EC keys PKCS#8 (DER).
    pub fn load(name: &str, kid: &str) -> Self {
        let der = std::fs::read(format!("{}/keys/{name}.der", env!("CARGO_MANIFEST_DIR")))
            .expect("a key fixture");
        let (alg, encoding) = match name {
            "ec-p384" => (Algorithm::ES384, EncodingKey::from_ec_der(&der)),
            _ if name.starts_with("ec") => (Algorithm::ES256, EncodingKey::from_ec_der(&der)),
            _ => (Algorithm::RS256, EncodingKey::from_rsa_der(&der)),
        };
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&encoding, alg).unwrap_or_else(|e| panic!("{name}: {e:?}")),
        )
        .expect("JSON");
        jwk["kid"] = kid.into();
        jwk["use"] = "sig".into();
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    /// The header a provider puts on its tokens.
    pub fn header(&self) -> Value {
        json!({ "alg": format!("{:?}", self.alg), "typ": "JWT", "kid": self.kid })
    }

    /// A token of `claims` under `header`, both taken as they are.
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).expect("signs");
        format!("{input}.{signature}")
    }

    /// A token of `claims` under the provider's header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&self.header().to_string(), &claims.to_string())
    }
}

/// The JWKS document of `keys`.
pub fn document(keys: &[&Key]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}
