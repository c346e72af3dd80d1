//! HS256 tokens, good and bad, signed like the server expects (`CHAT_JWT_SECRET`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

use super::{TEST_SECRET, now_secs};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `header.claims.HMAC-SHA256(secret)`, whatever the header says.
pub fn sign_hs256(secret: &str, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// The standard header and claims `sub`, `iat` = now, `exp` = now + 1 h.
pub fn claims(sub: &str) -> Value {
    let now = now_secs();
    json!({"sub": sub, "iat": now, "exp": now + 3600})
}

/// `{"alg":"HS256","typ":"JWT"}`.
pub fn header() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

/// A valid token for `sub`.
pub fn valid(sub: &str) -> String {
    sign_hs256(TEST_SECRET, &header(), &claims(sub))
}

/// A valid token with extra or replaced claims.
pub fn with_claims(sub: &str, extra: Value) -> String {
    let mut claims = claims(sub);
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        claims[k] = v.clone();
    }
    sign_hs256(TEST_SECRET, &header(), &claims)
}

/// Expired ten minutes ago (beyond any reasonable clock-skew leeway).
pub fn expired(sub: &str) -> String {
    let now = now_secs();
    with_claims(sub, json!({"iat": now - 7200, "exp": now - 600}))
}

/// Signed with another secret.
pub fn wrong_secret(sub: &str) -> String {
    sign_hs256("not-the-server-secret", &header(), &claims(sub))
}

/// `alg: none` with an empty signature.
pub fn alg_none(sub: &str) -> String {
    let input = signing_input(&json!({"alg": "none", "typ": "JWT"}), &claims(sub));
    format!("{input}.")
}

/// A correct HS512 signature with the right secret: refused because HS256 is pinned.
pub fn hs512(sub: &str) -> String {
    let input = signing_input(&json!({"alg": "HS512", "typ": "JWT"}), &claims(sub));
    let mut mac = Hmac::<Sha512>::new_from_slice(TEST_SECRET.as_bytes()).expect("any key size");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// `nbf` ten minutes in the future.
pub fn not_yet_valid(sub: &str) -> String {
    with_claims(sub, json!({"nbf": now_secs() + 600}))
}

/// No `exp` claim at all.
pub fn missing_exp(sub: &str) -> String {
    let now = now_secs();
    sign_hs256(TEST_SECRET, &header(), &json!({"sub": sub, "iat": now}))
}

/// Signed correctly, but `sub` is not a valid user id.
pub fn invalid_sub() -> String {
    valid("not a valid/user id!")
}

/// Signed correctly, without `sub`.
pub fn missing_sub() -> String {
    let now = now_secs();
    sign_hs256(
        TEST_SECRET,
        &header(),
        &json!({"iat": now, "exp": now + 3600}),
    )
}

/// An `RS256` header over an HMAC-SHA256 signature with the server secret (the
/// classic algorithm-confusion shape): refused because HS256 is pinned.
pub fn rs256(sub: &str) -> String {
    sign_hs256(
        TEST_SECRET,
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims(sub),
    )
}

/// A valid token for `signed_for` whose claims were swapped for `claimed`'s after
/// signing: the signature no longer matches.
pub fn tampered(signed_for: &str, claimed: &str) -> String {
    let token = valid(signed_for);
    let signature = token.rsplit('.').next().expect("a signature part");
    let forged = signing_input(&header(), &claims(claimed));
    format!("{forged}.{signature}")
}

/// A correctly signed, otherwise valid token over 8 KiB (a padding claim): refused
/// by size alone.
pub fn oversized(sub: &str) -> String {
    let token = with_claims(sub, json!({"pad": "p".repeat(8 * 1024)}));
    assert!(token.len() > 8 * 1024, "the token is over 8 KiB");
    token
}

/// `header.claims.HMAC-SHA256(TEST_SECRET)` over JSON text taken as it is: for what a
/// `Value` cannot hold (a repeated member name, a number beyond `u64`).
pub fn sign_text(header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let mut mac =
        Hmac::<Sha256>::new_from_slice(TEST_SECRET.as_bytes()).expect("HMAC takes any key size");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A valid token for `sub` whose header also has `crit`: an extension the server
/// does not understand, so it must refuse the token (RFC 7515 section 4.1.11).
pub fn crit_header(sub: &str) -> String {
    sign_hs256(
        TEST_SECRET,
        &json!({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}),
        &claims(sub),
    )
}

/// `alg` twice in the header, `none` first and `HS256` last.
pub fn repeated_alg(sub: &str) -> String {
    sign_text(
        r#"{"alg":"none","alg":"HS256","typ":"JWT"}"#,
        &claims(sub).to_string(),
    )
}

/// `sub` twice: an invalid user id first, `sub` last (a reader keeping the last copy
/// would accept it).
pub fn repeated_sub(sub: &str) -> String {
    let now = now_secs();
    let exp = now + 3600;
    sign_text(
        &header().to_string(),
        &format!(r#"{{"sub":"not a user!","sub":"{sub}","iat":{now},"exp":{exp}}}"#),
    )
}

/// `exp` twice: ten minutes ago first, in an hour last.
pub fn repeated_exp(sub: &str) -> String {
    let now = now_secs();
    let (past, future) = (now - 600, now + 3600);
    sign_text(
        &header().to_string(),
        &format!(r#"{{"sub":"{sub}","iat":{now},"exp":{past},"exp":{future}}}"#),
    )
}

/// A valid token for `sub` with `claim` written as `value` (raw JSON text), e.g. a
/// float or a number beyond `i64`.
pub fn with_raw_claim(sub: &str, claim: &str, value: &str) -> String {
    let mut claims = claims(sub);
    let claims = claims.as_object_mut().expect("claims are an object");
    claims.remove(claim);
    let mut text = Value::Object(claims.clone()).to_string();
    text.pop();
    sign_text(
        &header().to_string(),
        &format!(r#"{text},"{claim}":{value}}}"#),
    )
}

/// Every kind of token the server must refuse, with a name for failure messages.    /// Every kind of token the server must refuse, with a name for failure messages.
pub fn bad_tokens() -> Vec<(&'static str, String)> {
    vec![
        ("alg RS256", rs256("alice")),
        ("tampered claims", tampered("mallory", "alice")),
        ("over 8 KiB", oversized("alice")),
        ("empty", String::new()),
        ("garbage", "not-a-jwt".to_owned()),
        ("expired", expired("alice")),
        ("wrong secret", wrong_secret("alice")),
        ("alg none", alg_none("alice")),
        ("alg HS512", hs512("alice")),
        ("nbf in the future", not_yet_valid("alice")),
        ("missing exp", missing_exp("alice")),
        ("invalid sub", invalid_sub()),
        ("sub too long", valid(&"a".repeat(129))),
        ("missing sub", missing_sub()),
        ("crit in the header", crit_header("alice")),
        ("alg twice", repeated_alg("alice")),
        ("sub twice", repeated_sub("alice")),
        ("exp twice", repeated_exp("alice")),
        (
            "exp a float in the future",
            with_raw_claim("alice", "exp", &format!("{}.5", now_secs() + 3600)),
        ),
        (
            "exp 9999999999.5",
            with_raw_claim("alice", "exp", "9999999999.5"),
        ),
        (
            "exp 2^64",
            with_raw_claim("alice", "exp", "18446744073709551616"),
        ),
        (
            "exp u64::MAX",
            with_raw_claim("alice", "exp", "18446744073709551615"),
        ),
        ("nbf -1e300", with_raw_claim("alice", "nbf", "-1e300")),
        (
            "nbf below i64::MIN",
            with_raw_claim("alice", "nbf", "-9223372036854775809"),
        ),
        ("iat 1.5e9", with_raw_claim("alice", "iat", "1.5e9")),
        ("iat a string", with_raw_claim("alice", "iat", r#""now""#)),
    ]
}
