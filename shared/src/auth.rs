//! HS256 JSON Web Tokens: the algorithm is pinned, `exp` is required, `nbf`/`iss`/`aud`
//! are enforced when present or configured. Written against RFC 7519 with no generic
//! algorithm switch, so `alg: none` or an RSA/HMAC confusion cannot be expressed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::ids::{Millis, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Allowed clock skew for `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

/// Why a token was refused (logged, never shown beyond "unauthorized").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not HS256")]
    WrongAlgorithm,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has no exp claim")]
    MissingExpiry,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer or audience does not match")]
    WrongIssuerOrAudience,
    #[error("token subject is not a valid user id")]
    BadSubject,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// When the token stops being accepted: its `exp` plus the leeway, in milliseconds.
    /// A WebSocket opened with it is closed then.
    pub expires_at: Millis,
}

/// Verifies and issues tokens with one secret.
#[derive(Clone)]
pub struct TokenVerifier {
    secret: Vec<u8>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `secret`, with optional expected `iss` and `aud`.
    pub fn new(
        secret: impl Into<Vec<u8>>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        Self {
            secret: secret.into(),
            issuer,
            audience,
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }

    /// Checks a token at time `now_ms`: its user and until when it is accepted.
    pub fn verify(&self, token: &str, now_ms: Millis) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = decode_json(header_b64)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(TokenError::WrongAlgorithm);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()]);
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;

        let claims: Value = decode_json(payload_b64)?;
        let now = now_ms.div_euclid(1000);
        let numeric = |name: &str| -> Result<Option<i64>, TokenError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .or_else(|| v.as_f64().map(|f| f as i64))
                    .map(Some)
                    .ok_or(TokenError::Malformed),
            }
        };
        let exp = numeric("exp")?.ok_or(TokenError::MissingExpiry)?;
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = numeric("nbf")?
            && now < nbf.saturating_sub(LEEWAY_SECS)
        {
            return Err(TokenError::NotYetValid);
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss)
        {
            return Err(TokenError::WrongIssuerOrAudience);
        }
        if let Some(aud) = &self.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(list)) => list.iter().any(|v| v.as_str() == Some(aud)),
                _ => false,
            };
            if !matches {
                return Err(TokenError::WrongIssuerOrAudience);
            }
        }
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|s| UserId::parse(s).ok())
            .ok_or(TokenError::BadSubject)?;
        Ok(Verified {
            user,
            expires_at: exp.saturating_add(LEEWAY_SECS).saturating_mul(1000),
        })
    }

    /// Issues a token for `user` valid for `ttl_secs` from `now_ms`.
    pub fn issue(&self, user: &UserId, now_ms: Millis, ttl_secs: i64) -> String {
        let now = now_ms.div_euclid(1000);
        let mut claims =
            serde_json::json!({ "sub": user.as_str(), "iat": now, "exp": now + ttl_secs });
        if let Some(iss) = &self.issuer {
            claims["iss"] = iss.as_str().into();
        }
        if let Some(aud) = &self.audience {
            claims["aud"] = aud.as_str().into();
        }
        self.sign(
            br#"{"alg":"HS256","typ":"JWT"}"#,
            claims.to_string().as_bytes(),
        )
    }

    /// Signs any header and claims (raw JSON bytes, taken as they are) into a token.
    /// [`issue`](Self::issue) signs well-formed claims with it; tests and the fuzzer use
    /// it to reach the claim checks of [`verify`](Self::verify) with hostile claims.
    pub fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }
}

fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(TokenError::Malformed),
    }
}

/// Extracts a bearer token from an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_763_900_000_000;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new("secret", None, None)
    }

    fn signed(header: &str, claims: &str, secret: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn issued_tokens_verify() {
        let alice = UserId::parse("alice").unwrap();
        let t = verifier().issue(&alice, NOW, 60);
        assert_eq!(verifier().verify(&t, NOW).map(|v| v.user), Ok(alice));
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let exp = NOW / 1000 + 100;
        let cases = [
            (
                signed(
                    r#"{"alg":"none"}"#,
                    &format!(r#"{{"sub":"a","exp":{exp}}}"#),
                    "secret",
                ),
                TokenError::WrongAlgorithm,
            ),
            (
                signed(
                    r#"{"alg":"HS512"}"#,
                    &format!(r#"{{"sub":"a","exp":{exp}}}"#),
                    "secret",
                ),
                TokenError::WrongAlgorithm,
            ),
            (
                signed(HS, &format!(r#"{{"sub":"a","exp":{exp}}}"#), "other"),
                TokenError::BadSignature,
            ),
            (
                signed(HS, r#"{"sub":"a"}"#, "secret"),
                TokenError::MissingExpiry,
            ),
            (
                signed(
                    HS,
                    &format!(r#"{{"sub":"a","exp":{}}}"#, NOW / 1000 - 100),
                    "secret",
                ),
                TokenError::Expired,
            ),
            (
                signed(
                    HS,
                    &format!(r#"{{"sub":"a","exp":{exp},"nbf":{}}}"#, NOW / 1000 + 100),
                    "secret",
                ),
                TokenError::NotYetValid,
            ),
            (
                signed(HS, &format!(r#"{{"sub":"a b","exp":{exp}}}"#), "secret"),
                TokenError::BadSubject,
            ),
            (
                signed(HS, &format!(r#"{{"exp":{exp}}}"#), "secret"),
                TokenError::BadSubject,
            ),
            ("a.b".to_owned(), TokenError::Malformed),
            ("x".repeat(MAX_TOKEN_BYTES + 1), TokenError::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(verifier().verify(&token, NOW).map(|v| v.user), Err(want));
        }
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let v = TokenVerifier::new("secret", Some("me".into()), Some("app".into()));
        let exp = NOW / 1000 + 100;
        let good = signed(
            HS,
            &format!(r#"{{"sub":"a","exp":{exp},"iss":"me","aud":["x","app"]}}"#),
            "secret",
        );
        assert!(v.verify(&good, NOW).is_ok());
        let bad = signed(
            HS,
            &format!(r#"{{"sub":"a","exp":{exp},"iss":"me"}}"#),
            "secret",
        );
        assert_eq!(
            v.verify(&bad, NOW).map(|v| v.user),
            Err(TokenError::WrongIssuerOrAudience)
        );
    }

    #[test]
    fn bearer_headers_parse() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
