//! PROTOCOL.md 8.4: `PATCH /v1/conversations/{id}` renames a group (admins), with a
//! `details_changed` entry. Avatars are attachments, which are still to come: only
//! `avatar: null` is accepted.

use crate::support::*;

async fn patch(server: &TestServer, caller: &str, id: &str, body: Value) -> (u16, Value) {
    server
        .http(caller)
        .patch(&format!("/v1/conversations/{id}"), &body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_renames_a_group_and_members_get_the_details_changed_entry() {
    // GIVEN a group with bob online
    let server = server().start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let mut bob = server.connect("bob").await;

    // WHEN alice renames it
    let (status, conversation) = patch(&server, "alice", &id, json!({"name": "Crew"})).await;

    // THEN she gets the conversation as it is now
    assert_eq!(status, 200, "{conversation}");
    assert_subset(
        &conversation,
        &json!({"conversationId": id, "name": "Crew", "lastSeq": 1}),
    );
    // AND bob gets the entry, with both details as they are after the change
    let entry = bob.recv_type("message.new").await;
    assert_subset(
        &entry,
        &json!({"kind": "system", "event": "details_changed", "userIds": [],
                "actorId": "alice", "name": "Crew", "avatar": null, "seq": 1}),
    );
    let updated = bob.recv_type("conversation.updated").await;
    assert_eq!(updated["conversation"]["name"], "Crew");
    // AND the new name is what everyone reads, and the entry does not count as unread
    let seen = server.http("bob").conversation(&id).await;
    assert_subset(&seen, &json!({"name": "Crew", "unreadCount": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_name_again_appends_nothing() {
    let server = server().start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);

    let (status, conversation) = patch(&server, "alice", &id, json!({"name": "Team"})).await;

    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["lastSeq"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_of_groups_change_details_and_bad_ones_are_refused() {
    let server = server().start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let direct = conv_id(&server.http("alice").create_direct("carol").await);

    let member = patch(&server, "bob", &id, json!({"name": "Mine"})).await;
    assert_http_error(&member, 403, "FORBIDDEN");
    let outsider = patch(&server, "mallory", &id, json!({"name": "Mine"})).await;
    assert_http_error(&outsider, 404, "NOT_FOUND");
    let direct = patch(&server, "alice", &direct, json!({"name": "Us"})).await;
    assert_http_error(&direct, 403, "FORBIDDEN");
    for body in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"name": 7}),
        json!({"name": "Line\nbreak"}),
        json!({"avatar": "a_0123"}),
        json!({"avatar": 5}),
    ] {
        let refused = patch(&server, "alice", &id, body.clone()).await;
        assert_http_error(&refused, 400, "INVALID_MESSAGE");
    }
    let (status, cleared) = patch(&server, "alice", &id, json!({"avatar": null})).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(server.http("alice").conversation(&id).await["lastSeq"], 0);
}
