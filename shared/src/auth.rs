//! HS256 JSON Web Tokens: the algorithm is pinned, `exp` is required, `nbf`/`iss`/`aud`
//! are enforced when present or configured. Written against RFC 7519 with no generic
//! algorithm switch, so `alg: none` or an RSA/HMAC confusion cannot be expressed.
//!
//! What another reader could understand differently is refused rather than guessed at:
//! a header with `crit` (we understand no extension, RFC 7515 section 4.1.11), a member
//! name given twice in the header or the claims (serde_json would keep the last copy,
//! other libraries the first), and an `exp`/`nbf`/`iat` that is not a whole number of
//! seconds within `i64` (a float, `2^64`).

use std::cell::Cell;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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
    #[error("token header has crit (no extension is understood)")]
    CriticalHeader,
    #[error("token header or claims name a member twice")]
    RepeatedMember,
    #[error("token exp, nbf or iat is not a whole number of seconds within i64")]
    BadDate,
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
        if header.get("crit").is_some() {
            return Err(TokenError::CriticalHeader);
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
        // A date is an integer literal within i64: serde_json reads anything with a
        // fraction or an exponent, or beyond u64, as a float, which `as_i64` refuses.
        let date = |name: &str| -> Result<Option<i64>, TokenError> {
            claims
                .get(name)
                .map(|v| v.as_i64().ok_or(TokenError::BadDate))
                .transpose()
        };
        let exp = date("exp")?.ok_or(TokenError::MissingExpiry)?;
        date("iat")?;
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = date("nbf")?
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

/// A base64url JSON object with no member name repeated in any of its objects.
fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    let repeated = Cell::new(false);
    let mut reader = serde_json::Deserializer::from_slice(&bytes);
    let parsed = UniqueNames {
        repeated: &repeated,
    }
    .deserialize(&mut reader)
    .and_then(|v| reader.end().map(|()| v));
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(v),
        Err(_) if repeated.get() => Err(TokenError::RepeatedMember),
        _ => Err(TokenError::Malformed),
    }
}

/// Reads JSON into a [`Value`] like serde_json does, but fails on an object that names a
/// member twice (serde_json keeps the last), and says so in `repeated`.
#[derive(Clone, Copy)]
struct UniqueNames<'a> {
    repeated: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for UniqueNames<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueNames<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON whose objects name each member once")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.repeated.set(true);
                return Err(de::Error::custom(format_args!("member {name:?} repeated")));
            }
            let value = map.next_value_seed(self)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// Extracts a bearer token from an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub fn bearer_of(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
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
    fn a_crit_header_is_refused() {
        // GIVEN correctly signed, otherwise valid tokens whose header has `crit`
        let claims = format!(r#"{{"sub":"a","exp":{}}}"#, NOW / 1000 + 100);
        for header in [
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":["x"],"x":true}"#,
            r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":null}"#,
        ] {
            let token = signed(header, &claims, "secret");
            // WHEN it is verified THEN it is refused: we understand no extension
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::CriticalHeader),
                "{header}"
            );
        }
    }

    #[test]
    fn repeated_member_names_are_refused() {
        // GIVEN correctly signed tokens that name a member twice, where either copy
        // alone would make a valid token
        let (past, future) = (NOW / 1000 - 100, NOW / 1000 + 100);
        let claims = format!(r#"{{"sub":"a","exp":{future}}}"#);
        let cases = [
            (
                r#"{"alg":"HS256","alg":"HS256"}"#.to_owned(),
                claims.clone(),
            ),
            (r#"{"alg":"none","alg":"HS256"}"#.to_owned(), claims.clone()),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"mallory","sub":"a","exp":{future}}}"#),
            ),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"a","exp":{past},"exp":{future}}}"#),
            ),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"a","exp":{future},"x":{{"k":1,"k":2}}}}"#),
            ),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"a","exp":{future},"x":[{{"k":1,"k":2}}]}}"#),
            ),
        ];
        for (header, claims) in cases {
            let token = signed(&header, &claims, "secret");
            // WHEN it is verified THEN it is refused, whichever copy a reader would take
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::RepeatedMember),
                "{header} {claims}"
            );
        }
        // Equal names in different objects are not repeats.
        let token = signed(
            HS,
            &format!(r#"{{"sub":"a","exp":{future},"x":{{"sub":1}},"y":[{{"k":1}},{{"k":1}}]}}"#),
            "secret",
        );
        assert!(verifier().verify(&token, NOW).is_ok());
    }

    #[test]
    fn dates_that_are_not_whole_seconds_in_i64_are_refused() {
        // GIVEN correctly signed tokens whose exp, nbf or iat is a float, out of the
        // range of i64, or not a number
        let future = NOW / 1000 + 100;
        let bad_dates = [
            "1.5e9",
            "1e10",
            "9999999999.5",
            &format!("{future}.0"),
            &format!("{future}.5"),
            "18446744073709551616",
            "18446744073709551615",
            "9223372036854775808",
            "-9223372036854775809",
            "-1e300",
            "-0.5",
            r#""9999999999""#,
            "null",
            "true",
            "[9999999999]",
        ];
        for date in bad_dates {
            for claims in [
                format!(r#"{{"sub":"a","exp":{date}}}"#),
                format!(r#"{{"sub":"a","exp":{future},"nbf":{date}}}"#),
                format!(r#"{{"sub":"a","exp":{future},"iat":{date}}}"#),
            ] {
                let token = signed(HS, &claims, "secret");
                // WHEN it is verified THEN it is refused as malformed
                assert_eq!(
                    verifier().verify(&token, NOW),
                    Err(TokenError::BadDate),
                    "{claims}"
                );
            }
        }
        // Whole seconds at the edges of i64 are dates (long expired or far away).
        let ok = format!(
            r#"{{"sub":"a","exp":{},"nbf":{},"iat":-1}}"#,
            i64::MAX,
            i64::MIN
        );
        assert!(verifier().verify(&signed(HS, &ok, "secret"), NOW).is_ok());
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
