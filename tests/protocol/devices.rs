//! `POST /v1/devices` and `DELETE /v1/devices/{deviceId}`: push registrations.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_answers_201_and_delete_204_then_404() {
    let server = start().await;
    let bob = server.http("bob");

    let (status, body) = bob
        .post(
            "/v1/devices",
            &json!({"deviceId": "phone-1", "platform": "apns", "token": "t1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_subset(&body, &json!({"deviceId": "phone-1", "platform": "apns"}));

    let (status, body) = bob
        .post(
            "/v1/devices",
            &json!({"deviceId": "phone-1", "platform": "apns", "token": "t2"}),
        )
        .await;
    assert_eq!(status, 201, "re-registering updates: {body}");

    let (status, body) = bob.delete("/v1/devices/phone-1").await;
    assert_eq!(status, 204, "{body}");
    assert_http_error(&bob.delete("/v1/devices/phone-1").await, 404, "NOT_FOUND");
    assert_http_error(
        &bob.delete("/v1/devices/never-registered").await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_is_accepted_and_others_refused() {
    let server = start().await;
    let bob = server.http("bob");
    for (n, platform) in ["apns", "apns_sandbox", "fcm"].into_iter().enumerate() {
        bob.register_device(&format!("dev-{n}"), platform, &format!("tok-{n}"))
            .await;
    }

    for body in [
        json!({"deviceId": "x", "platform": "webpush", "token": "t"}),
        json!({"deviceId": "x", "platform": "apns"}),
        json!({"deviceId": "x", "platform": "apns", "token": ""}),
        json!({"platform": "apns", "token": "t"}),
        json!({"deviceId": "bad device", "platform": "apns", "token": "t"}),
        json!({"deviceId": "d".repeat(65), "platform": "apns", "token": "t"}),
    ] {
        let response = bob.post("/v1/devices", &body).await;
        assert_eq!(response.0, 400, "{body}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_of_another_user_is_not_theirs_to_delete() {
    let server = start().await;
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob")
        .await;

    let response = server.http("carol").delete("/v1/devices/phone-1").await;

    assert_http_error(&response, 404, "NOT_FOUND");
    let (status, _) = server.http("bob").delete("/v1/devices/phone-1").await;
    assert_eq!(status, 204, "bob's device survived carol's delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_device_gets_no_push() {
    let (server, id) = team().await;
    server
        .http("bob")
        .register_device("bob-1", "apns", "tok-bob")
        .await;
    server
        .http("carol")
        .register_device("carol-1", "fcm", "tok-carol")
        .await;
    let (status, _) = server.http("bob").delete("/v1/devices/bob-1").await;
    assert_eq!(status, 204);

    server.http("alice").send_message(&id, "cm-1", "hi").await;

    server
        .wait_for_pushes("carol's push", |p| !pushes_for(p, "carol").is_empty())
        .await;
    tokio::time::sleep(SHORT).await;
    let pushes = server.push_outbox().await;
    assert!(pushes_for(&pushes, "bob").is_empty(), "{pushes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registered_by_another_user_moves_to_them() {
    let (server, id) = team().await;
    server
        .http("bob")
        .register_device("shared-phone", "apns", "tok-shared")
        .await;
    // The phone changes hands: carol logs in on it and registers the same token.
    server
        .http("carol")
        .register_device("carols-phone", "apns", "tok-shared")
        .await;

    server
        .http("alice")
        .send_message(&id, "cm-1", "who gets this?")
        .await;

    server
        .wait_for_pushes("carol's push", |p| !pushes_for(p, "carol").is_empty())
        .await;
    tokio::time::sleep(SHORT).await;
    let pushes = server.push_outbox().await;
    assert!(
        pushes_for(&pushes, "bob").is_empty(),
        "bob lost the token: {pushes:#?}"
    );
    assert_eq!(pushes_for(&pushes, "carol").len(), 1, "{pushes:#?}");
    assert_eq!(pushes_for(&pushes, "carol")[0]["deviceId"], "carols-phone");
}
