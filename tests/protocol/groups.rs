//! Section 4: group membership, admin rules, and the member list.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_adds_members_who_get_conversation_new_while_others_get_updated() {
    let server = start().await;
    let alice = server.http("alice");
    let id = conv_id(&alice.create_group("Team", &["bob"]).await);
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;

    let (status, conversation) = alice.add_members(&id, &["carol", "dave"]).await;

    assert_eq!(status, 200, "{conversation}");
    assert_conversation(&conversation);
    assert_eq!(conversation["memberCount"], 4);
    assert_eq!(member_ids(&conversation), ["alice", "bob", "carol", "dave"]);
    assert_eq!(member(&conversation, "carol")["role"], "member");

    let added = carol.recv_type("conversation.new").await;
    assert_subset(
        &added["conversation"],
        &json!({"conversationId": id, "memberCount": 4}),
    );
    let updated = bob.recv_type("conversation.updated").await;
    assert_conversation(&updated["conversation"]);
    assert_subset(
        &updated["conversation"],
        &json!({"conversationId": id, "memberCount": 4}),
    );
    bob.expect_silence("conversation.new", SHORT).await;
    carol
        .expect_silence("conversation.updated", Duration::ZERO)
        .await;

    let for_dave = server.http("dave").conversation(&id).await;
    assert_eq!(for_dave["memberCount"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_members_validates_its_body() {
    let server = start().await;
    let alice = server.http("alice");
    let id = conv_id(&alice.create_group("Team", &[]).await);
    let too_many: Vec<String> = (0..101).map(|i| format!("user-{i}")).collect();

    for body in [
        json!({"userIds": too_many}),
        json!({"userIds": ["bad user"]}),
        json!({"userIds": "bob"}),
        json!({}),
    ] {
        let response = alice
            .post(&format!("/v1/conversations/{id}/members"), &body)
            .await;
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    let hundred: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    let (status, body) = alice
        .post(
            &format!("/v1/conversations/{id}/members"),
            &json!({"userIds": hundred}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["memberCount"], 101);
    assert_conversation(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admin_cannot_add_members() {
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);

    let response = server.http("bob").add_members(&id, &["carol"]).await;

    assert_http_error(&response, 403, "FORBIDDEN");
    assert_eq!(
        server.http("alice").conversation(&id).await["memberCount"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversation_refuses_adding_and_removing() {
    let (server, id) = direct_pair().await;

    let response = server.http("alice").add_members(&id, &["carol"]).await;
    assert_http_error(&response, 403, "FORBIDDEN");
    let response = server.http("alice").remove_member(&id, "bob").await;
    assert_http_error(&response, 403, "FORBIDDEN");
    let response = server.http("alice").remove_member(&id, "alice").await;
    assert_http_error(&response, 403, "FORBIDDEN");

    assert_eq!(server.http("bob").conversation(&id).await["memberCount"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_leaves_and_gets_conversation_removed() {
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let mut bob_phone = server.connect_device("bob", "phone").await;
    let mut bob_laptop = server.connect_device("bob", "laptop").await;

    let (status, body) = server.http("bob").remove_member(&id, "bob").await;

    assert_eq!(status, 204, "{body}");
    for ws in [&mut bob_phone, &mut bob_laptop] {
        let removed = ws.recv_type("conversation.removed").await;
        assert_subset(
            &removed,
            &json!({"type": "conversation.removed", "conversationId": id}),
        );
    }
    let updated = alice.recv_type("conversation.updated").await;
    assert_subset(
        &updated["conversation"],
        &json!({"conversationId": id, "memberCount": 2}),
    );
    assert_eq!(member_ids(&updated["conversation"]), ["alice", "carol"]);

    assert_http_error(
        &server
            .http("bob")
            .get(&format!("/v1/conversations/{id}"))
            .await,
        404,
        "NOT_FOUND",
    );
    let error = bob_phone
        .request(send_action(&id, "cm-1", "still here?"))
        .await;
    assert_ws_error(&error, "NOT_FOUND", error["requestId"].as_str());
    assert_eq!(
        server.http("alice").conversation(&id).await["memberCount"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_removes_a_member() {
    let (server, id) = team().await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;

    let (status, body) = server.http("alice").remove_member(&id, "carol").await;

    assert_eq!(status, 204, "{body}");
    let removed = carol.recv_type("conversation.removed").await;
    assert_eq!(removed["conversationId"], id.as_str());
    let updated = bob.recv_type("conversation.updated").await;
    assert_eq!(member_ids(&updated["conversation"]), ["alice", "bob"]);
    assert_http_error(
        &server
            .http("carol")
            .get(&format!("/v1/conversations/{id}"))
            .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_cannot_remove_others() {
    let (server, id) = team().await;

    let response = server.http("bob").remove_member(&id, "carol").await;
    assert_http_error(&response, 403, "FORBIDDEN");
    let response = server.http("bob").remove_member(&id, "alice").await;
    assert_http_error(&response, 403, "FORBIDDEN");

    assert_eq!(
        server.http("alice").conversation(&id).await["memberCount"],
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_non_member_is_not_found() {
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);

    let response = server.http("alice").remove_member(&id, "zed").await;

    assert_http_error(&response, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_admin_leaving_promotes_the_longest_standing_member() {
    let server = start().await;
    let alice = server.http("alice");
    let id = conv_id(&alice.create_group("Team", &[]).await);
    // carol joins before bob, so she is the longest-standing member despite her name
    // (and in a later millisecond, so not even a store ordering by join time ties them).
    alice.add_members(&id, &["carol"]).await;
    server.tick().await;
    alice.add_members(&id, &["bob"]).await;
    let mut alice_ws = server.connect("alice").await;

    let (status, body) = alice.remove_member(&id, "alice").await;

    assert_eq!(status, 204, "{body}");
    let removed = alice_ws.recv_type("conversation.removed").await;
    assert_eq!(removed["conversationId"], id.as_str());
    let conversation = server.http("bob").conversation(&id).await;
    assert_eq!(member(&conversation, "carol")["role"], "admin");
    assert_eq!(member(&conversation, "bob")["role"], "member");
    assert_eq!(member_ids(&conversation), ["bob", "carol"], "userId order");

    let (status, body) = server.http("carol").add_members(&id, &["dave"]).await;
    assert_eq!(status, 200, "the new admin can add: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_pages_with_a_cursor_in_user_id_order() {
    let server = start().await;
    // Join order differs from userId order on purpose: the list follows userId.
    let zoe = server.http("zoe");
    let id = conv_id(&zoe.create_group("Team", &["mike"]).await);
    for user in ["bob", "yann", "alice", "xavier", "carol"] {
        let (status, body) = zoe.add_members(&id, &[user]).await;
        assert_eq!(status, 200, "{body}");
    }
    let by_user_id = ["alice", "bob", "carol", "mike", "xavier", "yann", "zoe"];

    let members = all_members(&server.http("alice"), &id, 3).await;

    let ids: Vec<&str> = members
        .iter()
        .filter_map(|m| m["userId"].as_str())
        .collect();
    assert_eq!(ids, by_user_id);
    for m in &members {
        assert_keys(m, &["userId", "role", "deliveredUpTo", "readUpTo"]);
    }
    assert_eq!(members[6]["role"], "admin");
    assert_eq!(member_ids(&zoe.conversation(&id).await), by_user_id);

    let (status, page) = server
        .http("zoe")
        .get(&format!("/v1/conversations/{id}/members"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["members"].as_array().map(Vec::len), Some(7));
    assert_eq!(page["nextCursor"], Value::Null);
}
