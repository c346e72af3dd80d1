//! PROTOCOL.md 8.4: `PATCH /v1/conversations/{id}` renames a group (admins), with a
//! `details_changed` entry. Avatars: attachments/avatar.rs.

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
        json!({"avatar": format!("a_{}", "0".repeat(32))}),
        json!({"avatar": 5}),
    ] {
        let refused = patch(&server, "alice", &id, body.clone()).await;
        assert_http_error(&refused, 400, "INVALID_MESSAGE");
    }
    let (status, cleared) = patch(&server, "alice", &id, json!({"avatar": null})).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(server.http("alice").conversation(&id).await["lastSeq"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_message_is_shown_as_it_is_now_without_reactions() {
    // GIVEN a conversation with no message yet: no last message, no avatar
    let (server, id) = direct_pair().await;
    let empty = server.http("bob").conversation(&id).await;
    assert_subset(&empty, &json!({"lastMessage": null, "avatar": null}));

    // WHEN alice sends two messages, edits the second and bob reacts to it
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "m-1", "first").await;
    let second = alice.send_message(&id, "m-2", "secnd").await;
    let seq = second["seq"].as_u64().unwrap();
    let edit = alice
        .request(
            json!({"action": "edit", "conversationId": id, "clientMessageId": "e-1",
                        "targetSeq": seq, "content": {"type": "text", "text": "second"}}),
        )
        .await;
    assert_eq!(edit["type"], "message.ack", "{edit}");
    let mut bob = server.connect("bob").await;
    let react = bob
        .request(
            json!({"action": "react", "conversationId": id, "clientMessageId": "r-1",
                        "targetSeq": seq, "emoji": "👍"}),
        )
        .await;
    assert_eq!(react["type"], "message.ack", "{react}");

    // THEN the last message is the second, edited, with no reactions key, in every view
    let seen = server.http("bob").conversation(&id).await;
    let last = &seen["lastMessage"];
    assert_subset(
        last,
        &json!({"seq": seq, "kind": "message", "senderId": "alice",
                "content": {"type": "text", "text": "second"}, "deleted": false}),
    );
    assert!(last["editedAt"].is_number(), "{last}");
    assert!(last.get("reactions").is_none(), "{last}");
    let (_, listed) = server.http("bob").get("/v1/conversations").await;
    assert_eq!(listed["conversations"][0]["lastMessage"]["seq"], seq);

    // AND once deleted it is a tombstone, still the last message
    let deleted = alice
        .request(
            json!({"action": "delete", "conversationId": id, "clientMessageId": "d-1",
                        "targetSeq": seq}),
        )
        .await;
    assert_eq!(deleted["type"], "message.ack", "{deleted}");
    let seen = server.http("bob").conversation(&id).await;
    assert_subset(
        &seen["lastMessage"],
        &json!({"seq": seq, "deleted": true, "content": null}),
    );
}
