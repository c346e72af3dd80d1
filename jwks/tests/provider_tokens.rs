//! RS256 and ES256 tokens of an identity provider, verified against its key set served
//! by a real HTTP server on loopback: the HS256 suite's hostile cases for both
//! algorithms, algorithm confusion, keys that rotate, an endpoint that fails, and the
//! token shapes of Cognito, Auth0 and Firebase.

use std::sync::Arc;

use chat_jwks::HttpKeySet;
use chat_shared::auth::{KeySet, MAX_AGE_MS, REFRESH_INTERVAL_MS, TokenError, TokenVerifier};
use chat_tests::provider::{Answer, Jwks, Key, document};
use serde_json::{Value, json};

const NOW: i64 = 1_763_900_000_000;
const ISSUER: &str = "https://issuer.example/";
const AUDIENCE: &str = "chat-app";

fn key_set(jwks: &Jwks) -> Arc<KeySet> {
    KeySet::new(Arc::new(HttpKeySet::new(&jwks.url).unwrap()))
}

fn provider(jwks: &Jwks) -> TokenVerifier {
    TokenVerifier::provider(key_set(jwks), ISSUER.into(), Some(AUDIENCE.into()))
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": NOW / 1000, "exp": NOW / 1000 + 600 })
}

async fn user(verifier: &TokenVerifier, token: &str) -> Result<String, TokenError> {
    verifier
        .verify(token, NOW)
        .await
        .map(|v| v.user.as_str().to_owned())
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_the_key_set_verify() {
    let (rsa, ec) = (Key::load("rsa-a", "r1"), Key::load("ec-a", "e1"));
    let jwks = Jwks::start(Answer::Json(document(&[&rsa, &ec]))).await;
    let verifier = provider(&jwks);
    assert_eq!(
        user(&verifier, &rsa.sign(&claims("alice"))).await,
        Ok("alice".into())
    );
    assert_eq!(
        user(&verifier, &ec.sign(&claims("bob"))).await,
        Ok("bob".into())
    );
    // One fetch served both: keys are cached.
    assert_eq!(jwks.requests(), 1);
    // Our own HS256 tokens are refused when no secret is configured...
    let hs = TokenVerifier::new("a-secret", Some(ISSUER.into()), Some(AUDIENCE.into()));
    let ours = hs.issue(&chat_shared::ids::UserId::parse("carol").unwrap(), NOW, 60);
    assert_eq!(
        user(&verifier, &ours).await,
        Err(TokenError::WrongAlgorithm)
    );
    // ...and accepted beside the provider's when one is.
    let both = TokenVerifier::new("a-secret", None, None).with_provider(
        key_set(&jwks),
        ISSUER.into(),
        Some(AUDIENCE.into()),
    );
    assert_eq!(user(&both, &ours).await, Ok("carol".into()));
    assert_eq!(
        user(&both, &rsa.sign(&claims("alice"))).await,
        Ok("alice".into())
    );
}

/// The hostile cases of the HS256 suite (`chat_shared::auth` unit tests), signed with a
/// provider key of each algorithm.
#[tokio::test]
async fn hostile_tokens_are_refused_for_both_algorithms() {
    let (rsa, ec, other) = (
        Key::load("rsa-a", "r1"),
        Key::load("ec-a", "e1"),
        Key::load("rsa-b", "r2"),
    );
    let jwks = Jwks::start(Answer::Json(document(&[&rsa, &ec]))).await;
    let verifier = provider(&jwks);
    let (past, future) = (NOW / 1000 - 100, NOW / 1000 + 100);
    for key in [&rsa, &ec] {
        let alg = format!("{:?}", key.alg);
        let h = key.header().to_string();
        let kid = &key.kid;
        let good = |extra: &str| {
            format!(r#"{{"sub":"a","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{future}{extra}}}"#)
        };
        let cases: Vec<(String, TokenError)> = vec![
            (
                key.sign_raw(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#), &good("")),
                TokenError::WrongAlgorithm,
            ),
            (
                key.sign_raw(&format!(r#"{{"alg":"RS512","kid":"{kid}"}}"#), &good("")),
                TokenError::WrongAlgorithm,
            ),
            (
                key.sign_raw(&format!(r#"{{"kid":"{kid}"}}"#), &good("")),
                TokenError::WrongAlgorithm,
            ),
            // Signed by a key outside the set, under this key's kid.
            (
                if key.alg == other.alg {
                    other.sign_raw(&h, &good(""))
                } else {
                    let mut t = key.sign_raw(&h, &good(""));
                    t.replace_range(t.len() - 4.., "AAAA");
                    t
                },
                TokenError::BadSignature,
            ),
            (
                key.sign_raw(
                    &h,
                    &format!(r#"{{"sub":"a","iss":"{ISSUER}","aud":"{AUDIENCE}"}}"#),
                ),
                TokenError::MissingExpiry,
            ),
            (
                key.sign_raw(
                    &h,
                    &good("").replace(&future.to_string(), &past.to_string()),
                ),
                TokenError::Expired,
            ),
            (
                key.sign_raw(&h, &good(&format!(r#","nbf":{future}"#))),
                TokenError::NotYetValid,
            ),
            (
                key.sign_raw(&h, &good("").replace(r#""sub":"a""#, r#""sub":"a b""#)),
                TokenError::BadSubject,
            ),
            (
                key.sign_raw(&h, &good("").replace(r#""sub":"a","#, "")),
                TokenError::BadSubject,
            ),
            (
                key.sign_raw(&h, &good("").replace(ISSUER, "https://other.example/")),
                TokenError::WrongIssuerOrAudience,
            ),
            (
                key.sign_raw(&h, &good("").replace(AUDIENCE, "other-app")),
                TokenError::WrongIssuerOrAudience,
            ),
            (
                key.sign_raw(
                    &format!(r#"{{"alg":"{alg}","kid":"{kid}","crit":["exp"]}}"#),
                    &good(""),
                ),
                TokenError::CriticalHeader,
            ),
            (
                key.sign_raw(
                    &format!(r#"{{"alg":"{alg}","alg":"{alg}","kid":"{kid}"}}"#),
                    &good(""),
                ),
                TokenError::RepeatedMember,
            ),
            (
                key.sign_raw(&h, &good(r#","sub":"mallory""#)),
                TokenError::RepeatedMember,
            ),
            (
                key.sign_raw(&h, &good(r#","iat":1.5"#)),
                TokenError::BadDate,
            ),
            (
                key.sign_raw(&h, &good("").replace(&future.to_string(), "1e10")),
                TokenError::BadDate,
            ),
            (
                key.sign_raw(&format!(r#"{{"alg":"{alg}","kid":7}}"#), &good("")),
                TokenError::Malformed,
            ),
            ("a.b".to_owned(), TokenError::Malformed),
            (
                "x".repeat(chat_shared::auth::MAX_TOKEN_BYTES + 1),
                TokenError::Malformed,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(
                user(&verifier, &token).await,
                Err(want.clone()),
                "{alg}: {want:?}"
            );
        }
        assert_eq!(
            user(&verifier, &key.sign_raw(&h, &good(""))).await,
            Ok("a".into())
        );
    }
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let (rsa, ec) = (Key::load("rsa-a", "r1"), Key::load("ec-a", "e1"));
    let jwks = Jwks::start(Answer::Json(document(&[&rsa, &ec]))).await;
    let body = claims("mallory").to_string();
    // GIVEN HS256 tokens "signed" with what an attacker knows of the public RSA key: the
    // JWKS document, its modulus, the key as JSON
    let public_secrets = [
        document(&[&rsa]),
        rsa.jwk["n"].as_str().unwrap().to_owned(),
        rsa.jwk.to_string(),
    ];
    // WHEN a verifier with the key set, with or without a secret of its own, reads them
    // THEN each is refused
    for secret in public_secrets {
        let forged = TokenVerifier::new(secret.as_str(), None, None).sign(
            format!(r#"{{"alg":"HS256","kid":"{}"}}"#, rsa.kid).as_bytes(),
            body.as_bytes(),
        );
        assert_eq!(
            user(&provider(&jwks), &forged).await,
            Err(TokenError::WrongAlgorithm)
        );
        let with_secret = TokenVerifier::new("our-own-secret", None, None).with_provider(
            key_set(&jwks),
            ISSUER.into(),
            None,
        );
        assert_eq!(
            user(&with_secret, &forged).await,
            Err(TokenError::BadSignature)
        );
    }
    // A kid naming a key of the other type: the key decides the algorithm.
    let verifier = provider(&jwks);
    let es_on_rsa = ec.sign_raw(&format!(r#"{{"alg":"ES256","kid":"{}"}}"#, rsa.kid), &body);
    assert_eq!(
        user(&verifier, &es_on_rsa).await,
        Err(TokenError::WrongAlgorithm)
    );
    let rs_on_ec = rsa.sign_raw(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, ec.kid), &body);
    assert_eq!(
        user(&verifier, &rs_on_ec).await,
        Err(TokenError::WrongAlgorithm)
    );
}

#[tokio::test]
async fn keys_named_by_the_token_are_never_fetched_or_used() {
    let rsa = Key::load("rsa-a", "r1");
    let attacker = Key::load("rsa-b", "evil");
    let jwks = Jwks::start(Answer::Json(document(&[&rsa]))).await;
    let theirs = Jwks::start(Answer::Json(document(&[&attacker]))).await;
    let verifier = provider(&jwks);
    let body = claims("mallory").to_string();
    for header in [
        json!({ "alg": "RS256", "kid": "evil", "jku": theirs.url }),
        json!({ "alg": "RS256", "kid": "evil", "x5u": theirs.url }),
        json!({ "alg": "RS256", "kid": "evil", "jwk": attacker.jwk }),
        json!({ "alg": "RS256", "kid": "r1", "jku": theirs.url, "jwk": attacker.jwk }),
    ] {
        let token = attacker.sign_raw(&header.to_string(), &body);
        assert!(user(&verifier, &token).await.is_err(), "{header}");
    }
    assert_eq!(
        theirs.requests(),
        0,
        "the attacker's key set was never asked"
    );
}

#[tokio::test]
async fn weak_and_foreign_keys_in_the_set_are_not_used() {
    // A 1024-bit RSA key and a token it signed (made with openssl: aws-lc refuses to
    // make or use such keys).
    let small: Value =
        serde_json::from_str(include_str!("../../tests/keys/rsa-1024.json")).unwrap();
    let p384 = Key::load("ec-p384", "p384");
    let good = Key::load("ec-a", "e1");
    let mut encryption = Key::load("rsa-b", "enc").jwk;
    encryption["use"] = "enc".into();
    let mut hmac = json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "oct" });
    hmac["alg"] = "HS256".into();
    let doc =
        json!({ "keys": [small["jwk"], p384.jwk, encryption, hmac, good.jwk, {"kty":"RSA"}, 7] });
    let jwks = Jwks::start(Answer::Json(doc.to_string())).await;
    let verifier = provider(&jwks);
    assert_eq!(
        user(&verifier, small["token"].as_str().unwrap()).await,
        Err(TokenError::UnknownKey),
        "RSA under 2048 bits"
    );
    assert_eq!(
        user(&verifier, &p384.sign(&claims("a"))).await,
        Err(TokenError::WrongAlgorithm),
        "ES384 is not accepted"
    );
    let p384_as_es256 = p384.sign_raw(r#"{"alg":"ES256","kid":"p384"}"#, &claims("a").to_string());
    assert_eq!(
        user(&verifier, &p384_as_es256).await,
        Err(TokenError::UnknownKey),
        "a P-384 key is not in the set"
    );
    let hs_by_oct = TokenVerifier::new("secret", None, None).sign(
        br#"{"alg":"HS256","kid":"oct"}"#,
        claims("a").to_string().as_bytes(),
    );
    assert_eq!(
        user(&verifier, &hs_by_oct).await,
        Err(TokenError::WrongAlgorithm)
    );
    assert_eq!(
        user(&verifier, &good.sign(&claims("a"))).await,
        Ok("a".into())
    );
}

#[tokio::test]
async fn a_new_key_is_fetched_once_a_minute_at_most() {
    let (a, b) = (Key::load("rsa-a", "a"), Key::load("rsa-b", "b"));
    let jwks = Jwks::start(Answer::Json(document(&[&a]))).await;
    let keys = key_set(&jwks);
    let verifier = TokenVerifier::provider(keys.clone(), ISSUER.into(), Some(AUDIENCE.into()));
    let at = |t: i64, token: String| {
        let verifier = verifier.clone();
        async move {
            verifier
                .verify(&token, t)
                .await
                .map(|v| v.user.as_str().to_owned())
        }
    };
    let fresh = |t: i64, key: &Key| {
        key.sign(&json!({ "sub": "u", "iss": ISSUER, "aud": AUDIENCE, "exp": t / 1000 + 600 }))
    };
    assert_eq!(at(NOW, fresh(NOW, &a)).await, Ok("u".into()));
    assert_eq!(jwks.requests(), 1);
    // GIVEN the provider adds key b
    jwks.set(Answer::Json(document(&[&a, &b])));
    // WHEN a token of b comes within a minute of the last fetch THEN it is refused
    // without asking again (an unknown kid cannot make us hammer the provider)
    let t = NOW + 10_000;
    assert_eq!(at(t, fresh(t, &b)).await, Err(TokenError::UnknownKey));
    assert_eq!(
        at(t, fresh(t, &Key::load("ec-a", "z"))).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(jwks.requests(), 1);
    // WHEN one comes a minute later THEN the set is fetched once and it verifies
    let t = NOW + REFRESH_INTERVAL_MS;
    assert_eq!(at(t, fresh(t, &b)).await, Ok("u".into()));
    assert_eq!(at(t, fresh(t, &b)).await, Ok("u".into()));
    assert_eq!(jwks.requests(), 2);
}

#[tokio::test]
async fn a_removed_key_stops_verifying_once_the_set_is_old() {
    let (a, b) = (Key::load("rsa-a", "a"), Key::load("ec-a", "b"));
    let jwks = Jwks::start(Answer::Json(document(&[&a, &b]))).await;
    let keys = key_set(&jwks);
    keys.load(NOW).await;
    let verifier = TokenVerifier::provider(keys.clone(), ISSUER.into(), None);
    let token =
        |key: &Key| key.sign(&json!({ "sub": "u", "iss": ISSUER, "exp": NOW / 1000 + 3600 }));
    // GIVEN the provider drops key a
    jwks.set(Answer::Json(document(&[&b])));
    // WHEN the set is older than its maximum age THEN the next token refreshes it (behind
    // its answer, which the cached key still gives)...
    let old = NOW + MAX_AGE_MS;
    assert!(verifier.verify(&token(&a), old).await.is_ok());
    wait_for(|| jwks.requests() == 2).await;
    // ...and once refreshed a's tokens are refused, b's still verify
    wait_for_refusal(&verifier, &token(&a), old).await;
    assert!(verifier.verify(&token(&b), old).await.is_ok());
}

#[tokio::test]
async fn a_failing_endpoint_keeps_the_cached_keys() {
    let a = Key::load("rsa-a", "a");
    let jwks = Jwks::start(Answer::Json(document(&[&a]))).await;
    let keys = key_set(&jwks);
    keys.load(NOW).await;
    let verifier = TokenVerifier::provider(keys, ISSUER.into(), None);
    let token = a.sign(&json!({ "sub": "u", "iss": ISSUER, "exp": NOW / 1000 + 86_400 }));
    let mut t = NOW;
    for answer in [
        Answer::Status(500),
        Answer::Status(404),
        Answer::Json("{not json".into()),
        Answer::Json(r#"{"keys":[]}"#.into()),
        Answer::Json(r#"{"keys":"none"}"#.into()),
        Answer::Huge(10 * 1024 * 1024),
        Answer::Redirect(jwks.url.clone()),
    ] {
        // GIVEN the endpoint answers badly, and the set is old enough to be refreshed
        jwks.set(answer);
        t += MAX_AGE_MS;
        let before = jwks.requests();
        // WHEN tokens come THEN they still verify with the cached key, and the refresh
        // was tried
        assert!(verifier.verify(&token, t).await.is_ok());
        wait_for(|| jwks.requests() > before).await;
        assert!(verifier.verify(&token, t).await.is_ok());
    }
}

#[tokio::test]
async fn a_slow_endpoint_holds_up_only_the_token_that_needs_it() {
    let (a, b) = (Key::load("rsa-a", "a"), Key::load("rsa-b", "b"));
    let jwks = Jwks::start(Answer::Json(document(&[&a]))).await;
    let keys = key_set(&jwks);
    keys.load(NOW).await;
    let verifier = TokenVerifier::provider(keys, ISSUER.into(), None);
    let token =
        |key: &Key| key.sign(&json!({ "sub": "u", "iss": ISSUER, "exp": NOW / 1000 + 3600 }));
    // GIVEN the endpoint holds its answer, and a token of the new key b waits for it
    jwks.set(Answer::Held(document(&[&a, &b])));
    let t = NOW + REFRESH_INTERVAL_MS;
    let waiting = tokio::spawn({
        let (verifier, token) = (verifier.clone(), token(&b));
        async move { verifier.verify(&token, t).await }
    });
    wait_for(|| jwks.requests() == 2).await;
    // WHEN a token of the known key a comes THEN it verifies while the other still waits
    assert!(verifier.verify(&token(&a), t).await.is_ok());
    assert!(!waiting.is_finished());
    // and once the answer comes, b's token verifies too
    jwks.release();
    assert!(waiting.await.unwrap().is_ok());
}

#[tokio::test]
async fn an_endpoint_that_has_not_answered_yet_is_asked_again_within_seconds() {
    let a = Key::load("rsa-a", "a");
    let jwks = Jwks::start(Answer::Held(String::new())).await;
    let verifier = TokenVerifier::provider(key_set(&jwks), ISSUER.into(), None);
    let token = a.sign(&json!({ "sub": "u", "iss": ISSUER, "exp": NOW / 1000 + 3600 }));
    // The first token waits for the fetch's time limit, then is refused; the next one
    // within the minute is refused at once without asking again.
    assert_eq!(
        verifier.verify(&token, NOW).await.map(|v| v.user),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(
        verifier.verify(&token, NOW + 1).await.map(|v| v.user),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(jwks.requests(), 1);
    // Without any key, the set is asked for again sooner than once a minute: once the
    // provider answers, its tokens verify.
    jwks.set(Answer::Json(document(&[&a])));
    let later = NOW + chat_shared::auth::EMPTY_RETRY_MS;
    assert!(verifier.verify(&token, later).await.is_ok());
    assert_eq!(jwks.requests(), 2);
}

/// Cognito user pools sign ID tokens (`aud` = the app client id, `token_use: id`) and
/// access tokens (no `aud`; `client_id`, `token_use: access`) with RS256.
#[tokio::test]
async fn cognito_id_and_access_tokens() {
    let key = Key::load("rsa-a", "cognito-1");
    let jwks = Jwks::start(Answer::Json(document(&[&key]))).await;
    let issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
    let client = "5a1b2c3d4e5f6g7h8i9j0k1l2m";
    let verifier = TokenVerifier::provider(key_set(&jwks), issuer.into(), Some(client.into()));
    let sub = "7c2f4a90-1d3e-4b5f-8a6c-9d0e1f2a3b4c";
    let exp = NOW / 1000 + 3600;
    let id = |aud: &str| {
        json!({ "sub": sub, "iss": issuer, "aud": aud, "token_use": "id", "cognito:username": "alice",
                "auth_time": NOW / 1000, "iat": NOW / 1000, "exp": exp, "email": "alice@example.com" })
    };
    let access = |client_id: &str, token_use: &str| {
        json!({ "sub": sub, "iss": issuer, "client_id": client_id, "token_use": token_use,
                "scope": "aws.cognito.signin.user.admin", "username": "alice", "iat": NOW / 1000, "exp": exp })
    };
    assert_eq!(
        user(&verifier, &key.sign(&id(client))).await,
        Ok(sub.into())
    );
    assert_eq!(
        user(&verifier, &key.sign(&access(client, "access"))).await,
        Ok(sub.into())
    );
    for refused in [
        id("another-client"),
        access("another-client", "access"),
        access(client, "id"),
        json!({ "sub": sub, "iss": issuer, "client_id": client, "exp": exp }),
        json!({ "sub": sub, "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other", "aud": client, "exp": exp }),
    ] {
        assert_eq!(
            user(&verifier, &key.sign(&refused)).await,
            Err(TokenError::WrongIssuerOrAudience),
            "{refused}"
        );
    }
    // `cognito:username` as the user, where the app wants names rather than UUIDs.
    let by_name = TokenVerifier::provider(key_set(&jwks), issuer.into(), Some(client.into()))
        .with_user_claim("cognito:username");
    assert_eq!(
        user(&by_name, &key.sign(&id(client))).await,
        Ok("alice".into())
    );
}

/// Auth0 issues RS256 tokens whose issuer ends with a slash; its `sub` (`auth0|…`,
/// `google-oauth2|…`) holds a `|`, outside the user-id alphabet, so the user comes from a
/// claim an Auth0 Action adds.
#[tokio::test]
async fn auth0_tokens() {
    let key = Key::load("rsa-a", "auth0-1");
    let jwks = Jwks::start(Answer::Json(document(&[&key]))).await;
    let issuer = "https://example-tenant.eu.auth0.com/";
    let audience = "https://chat.example.com/api";
    let claim = "https://chat.example.com/user";
    let token = |iss: &str| {
        key.sign(&json!({ "sub": "auth0|64f1c2d3e4b5a6978812", "iss": iss, "aud": [audience, "https://example-tenant.eu.auth0.com/userinfo"],
                          "azp": "client", "scope": "openid profile", "iat": NOW / 1000, "exp": NOW / 1000 + 3600, claim: "alice" }))
    };
    let plain = TokenVerifier::provider(key_set(&jwks), issuer.into(), Some(audience.into()));
    assert_eq!(
        user(&plain, &token(issuer)).await,
        Err(TokenError::BadSubject)
    );
    let mapped = plain.with_user_claim(claim);
    assert_eq!(user(&mapped, &token(issuer)).await, Ok("alice".into()));
    assert_eq!(
        user(&mapped, &token("https://example-tenant.eu.auth0.com")).await,
        Err(TokenError::WrongIssuerOrAudience),
        "the issuer is compared exactly, trailing slash included"
    );
}

/// Firebase Authentication ID tokens: issuer `https://securetoken.google.com/<project>`,
/// audience the project id, RS256.
#[tokio::test]
async fn firebase_id_tokens() {
    let key = Key::load("rsa-b", "0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4");
    let jwks = Jwks::start(Answer::Json(document(&[&key]))).await;
    let project = "chat-example-1234";
    let issuer = format!("https://securetoken.google.com/{project}");
    let verifier = TokenVerifier::provider(key_set(&jwks), issuer.clone(), Some(project.into()));
    let token = |aud: &str| {
        key.sign(&json!({ "iss": issuer, "aud": aud, "auth_time": NOW / 1000 - 60, "user_id": "kX9pQ2mN7vR4sT1uW8yZ3bC6dE5f",
                          "sub": "kX9pQ2mN7vR4sT1uW8yZ3bC6dE5f", "iat": NOW / 1000, "exp": NOW / 1000 + 3600,
                          "firebase": { "identities": {}, "sign_in_provider": "anonymous" } }))
    };
    assert_eq!(
        user(&verifier, &token(project)).await,
        Ok("kX9pQ2mN7vR4sT1uW8yZ3bC6dE5f".into())
    );
    assert_eq!(
        user(&verifier, &token("another-project")).await,
        Err(TokenError::WrongIssuerOrAudience)
    );
}

async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the condition did not hold within 5 s");
}

/// A background refresh lands a moment after its request: wait until `token` is refused.
async fn wait_for_refusal(verifier: &TokenVerifier, token: &str, now: i64) {
    for _ in 0..500 {
        if verifier.verify(token, now).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the token was still accepted after 5 s");
}

/// Our HS256 tokens and a provider's come from different issuers: with a provider, the
/// configured issuer and audience are its own, and ours are checked without them.
#[tokio::test]
async fn our_tokens_and_the_providers_keep_their_own_claim_rules() {
    let rsa = Key::load("rsa-a", "r1");
    let jwks = Jwks::start(Answer::Json(document(&[&rsa]))).await;
    let config = chat_shared::config::TokenConfig {
        secret: Some("our-own-secret".into()),
        jwks_url: Some(jwks.url.clone()),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        ..Default::default()
    };
    let verifier = config.verifier(Some(key_set(&jwks)), None).unwrap();
    let ours = verifier.issue(&chat_shared::ids::UserId::parse("carol").unwrap(), NOW, 60);
    assert_eq!(user(&verifier, &ours).await, Ok("carol".into()));
    assert_eq!(
        user(&verifier, &rsa.sign(&claims("alice"))).await,
        Ok("alice".into())
    );
    let mut foreign = claims("alice");
    foreign["iss"] = "https://other.example/".into();
    assert_eq!(
        user(&verifier, &rsa.sign(&foreign)).await,
        Err(TokenError::WrongIssuerOrAudience)
    );
}
