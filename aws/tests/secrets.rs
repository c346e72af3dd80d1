//! Our HS256 secret held by Secrets Manager (moto's, on loopback): the secret-source
//! adapter (`chat_aws::secrets`) under the core's cache (`chat_shared::auth::SecretSet`).
//! A rotation (a new value put, the old one staged `AWSPREVIOUS`) reaches a running
//! process through the first token it cannot verify; withdrawing the previous value
//! reaches it within the ten minutes its secrets are kept; a store that fails or holds
//! something unusable leaves the secrets it read in place.

mod common;

use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use chat_aws::secrets::ManagedSecret;
use chat_shared::auth::{MAX_AGE_MS, REFRESH_INTERVAL_MS, SecretSet, TokenError, TokenVerifier};
use chat_shared::ids::Millis;
use chat_shared::ports::SecretSource;
use chat_tests::emulators::MotoServer;
use chat_tests::unique;
use common::{rotate_secret, secrets_client_at, user};

/// The verifier's clock (tokens are issued against it, far from expiring).
const NOW: Millis = 1_800_000_000_000;

const A: &str = "first-secret-of-the-stack-0123456789abcdef";
const B: &str = "second-secret-after-rotation-0123456789ab";
const C: &str = "third-secret-after-another-rotation-01234";

fn client() -> Client {
    secrets_client_at(&MotoServer::shared().endpoint())
}

/// A new secret in moto holding `value`; its ARN.
async fn create(value: &str) -> String {
    client()
        .create_secret()
        .name(unique("chat-jwt"))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

async fn rotate(arn: &str, value: &str) {
    rotate_secret(&client(), arn, value).await;
}

fn verifier(arn: &str) -> TokenVerifier {
    let source = ManagedSecret::new(client(), arn);
    TokenVerifier::from_secrets(SecretSet::from_source(Arc::new(source)), None, None)
}

/// A token for alice signed with `secret`, valid for a day from [`NOW`].
fn token(secret: &str) -> String {
    TokenVerifier::new(secret, None, None).issue(&user("alice"), NOW, 24 * 3600)
}

async fn accepts(verifier: &TokenVerifier, secret: &str, now: Millis) -> bool {
    match verifier.verify(&token(secret), now).await {
        Ok(verified) => {
            assert_eq!(verified.user, user("alice"));
            true
        }
        Err(TokenError::BadSignature) => false,
        Err(other) => panic!("refused for another reason than the signature: {other}"),
    }
}

#[tokio::test]
async fn the_adapter_reads_the_current_value_then_the_previous_one() {
    let arn = create(A).await;
    let source = ManagedSecret::new(client(), &arn);
    assert_eq!(source.fetch().await.unwrap(), [A]);

    rotate(&arn, B).await;
    assert_eq!(source.fetch().await.unwrap(), [B, A]);

    rotate(&arn, C).await;
    assert_eq!(source.fetch().await.unwrap(), [C, B], "A has no stage left");
}

#[tokio::test]
async fn a_rotation_reaches_a_running_verifier_at_the_first_token_of_the_new_secret() {
    // GIVEN a verifier that has read the secret A
    let arn = create(A).await;
    let verifier = verifier(&arn);
    assert!(accepts(&verifier, A, NOW).await);
    assert!(verifier.issues());

    // WHEN the secret is rotated to B, a minute later
    rotate(&arn, B).await;
    let later = NOW + REFRESH_INTERVAL_MS;

    // THEN a token signed with B is accepted (the store is read again), and one signed
    // with A still is (AWSPREVIOUS) while the tokens it signed expire
    assert!(accepts(&verifier, B, later).await);
    assert!(accepts(&verifier, A, later).await);
    // AND the verifier now signs with B
    let issued = verifier.issue(&user("alice"), later, 60);
    assert_eq!(
        issued,
        TokenVerifier::new(B, None, None).issue(&user("alice"), later, 60)
    );
}

#[tokio::test]
async fn forged_tokens_read_the_store_at_most_once_a_minute() {
    // GIVEN a verifier that has read A, and a forged token that made it read the store
    let arn = create(A).await;
    let verifier = verifier(&arn);
    assert!(accepts(&verifier, A, NOW).await);
    let forged = "an-attackers-guess-at-the-secret-0123456789";
    assert!(!accepts(&verifier, forged, NOW + REFRESH_INTERVAL_MS).await);

    // WHEN the secret is rotated within that minute
    rotate(&arn, B).await;

    // THEN B's tokens are refused until the minute has passed (forged tokens cannot make
    // every request read the store), and accepted after it
    let within = NOW + REFRESH_INTERVAL_MS + REFRESH_INTERVAL_MS - 1;
    assert!(!accepts(&verifier, B, within).await);
    assert!(accepts(&verifier, B, within + 1).await);
}

#[tokio::test]
async fn a_withdrawn_previous_secret_stops_verifying_within_the_age_of_the_cache() {
    // GIVEN a verifier that accepts A and B after a rotation
    let arn = create(A).await;
    rotate(&arn, B).await;
    let verifier = verifier(&arn);
    assert!(accepts(&verifier, A, NOW).await);

    // WHEN A, leaked, is withdrawn from AWSPREVIOUS
    let sm = client();
    let versions = sm
        .list_secret_version_ids()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    let previous = versions
        .versions()
        .iter()
        .find(|v| v.version_stages().iter().any(|s| s == "AWSPREVIOUS"))
        .and_then(|v| v.version_id())
        .expect("a version staged AWSPREVIOUS")
        .to_owned();
    sm.update_secret_version_stage()
        .secret_id(&arn)
        .version_stage("AWSPREVIOUS")
        .remove_from_version_id(previous)
        .send()
        .await
        .unwrap();

    // THEN within the cache's age A still verifies (no read per request), and once the
    // secrets are that old the request that notices refreshes them behind itself, after
    // which A is refused while B is accepted
    assert!(accepts(&verifier, A, NOW + MAX_AGE_MS - 1).await);
    let old = NOW + MAX_AGE_MS;
    assert!(accepts(&verifier, A, old).await, "answered from the cache");
    let mut refused = false;
    for _ in 0..100 {
        if !accepts(&verifier, A, old + 1).await {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused, "the refresh behind the request withdrew A");
    assert!(accepts(&verifier, B, old + 1).await);
}

#[tokio::test]
async fn a_store_that_fails_or_holds_a_short_secret_leaves_the_secrets_in_place() {
    // GIVEN a verifier that has read A
    let arn = create(A).await;
    let verifier = verifier(&arn);
    assert!(accepts(&verifier, A, NOW).await);

    // WHEN the current value becomes too short to be safe, and a token makes it read
    rotate(&arn, "short-secret").await;
    assert!(!accepts(&verifier, "short-secret", NOW + REFRESH_INTERVAL_MS).await);

    // THEN A is still accepted, and the short secret never is
    assert!(accepts(&verifier, A, NOW + REFRESH_INTERVAL_MS).await);
}

#[tokio::test]
async fn a_verifier_whose_store_cannot_be_read_refuses_our_tokens() {
    // GIVEN a secret store nobody listens on (a port just freed), and one that exists
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let unreachable = TokenVerifier::from_secrets(
        SecretSet::from_source(Arc::new(ManagedSecret::new(
            secrets_client_at(&closed),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:chat-jwt",
        ))),
        None,
        None,
    );
    // THEN our tokens are refused, promptly (the read is bounded), and nothing panics
    let started = std::time::Instant::now();
    assert!(!accepts(&unreachable, A, NOW).await);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!unreachable.issues());

    // AND a secret that does not exist is refused the same way
    let missing = verifier("arn:aws:secretsmanager:us-east-1:123456789012:secret:none-AbCdEf");
    assert!(!accepts(&missing, A, NOW).await);
}
