//! PROTOCOL.md 8.4: `PUT /v1/conversations/{id}/members/{userId}` `{"role"}`: admins give
//! roles, a group keeps an admin, and each change is a `system` entry.

use crate::support::*;

async fn set_role(
    server: &TestServer,
    caller: &str,
    id: &str,
    user: &str,
    role: &str,
) -> (u16, Value) {
    server
        .http(caller)
        .put(
            &format!("/v1/conversations/{id}/members/{user}"),
            &json!({ "role": role }),
        )
        .await
}

async fn last_seq(server: &TestServer, user: &str, id: &str) -> u64 {
    server.http(user).conversation(id).await["lastSeq"]
        .as_u64()
        .expect("lastSeq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_promotes_a_member_and_every_member_gets_the_role_changed_entry() {
    // GIVEN a group of alice (admin), bob and carol, all online
    let server = server().start().await;
    let id = conv_id(
        &server
            .http("alice")
            .create_group("Team", &["bob", "carol"])
            .await,
    );
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;

    // WHEN alice makes bob an admin
    let (status, member) = set_role(&server, "alice", &id, "bob", "admin").await;

    // THEN the answer is bob as a member now is
    assert_eq!(status, 200, "{member}");
    assert_subset(&member, &json!({"userId": "bob", "role": "admin"}));
    // AND every member gets the entry, with the new role and who gave it
    for ws in [&mut bob, &mut carol] {
        let entry = ws.recv_type("message.new").await;
        assert_subset(
            &entry,
            &json!({"kind": "system", "event": "role_changed", "userIds": ["bob"],
                    "actorId": "alice", "senderId": "alice", "role": "admin", "seq": 1}),
        );
        let updated = ws.recv_type("conversation.updated").await;
        assert_eq!(member_role(&updated["conversation"], "bob"), "admin");
    }
    // AND bob may now do what admins do
    let (status, body) = server.http("bob").add_members(&id, &["dave"]).await;
    assert_eq!(status, 200, "{body}");
}

fn member_role<'a>(conversation: &'a Value, user: &str) -> &'a str {
    conversation["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["userId"] == user))
        .and_then(|m| m["role"].as_str())
        .unwrap_or_else(|| panic!("{user} in {conversation}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_the_role_a_member_has_appends_nothing() {
    let server = server().start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);

    let (status, member) = set_role(&server, "alice", &id, "bob", "member").await;

    assert_eq!(status, 200, "{member}");
    assert_subset(&member, &json!({"userId": "bob", "role": "member"}));
    assert_eq!(last_seq(&server, "alice", &id).await, 0, "a retry is safe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_demoted_but_one_of_two_can() {
    let server = server().start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);

    let (status, body) = set_role(&server, "alice", &id, "alice", "member").await;
    assert_http_error(&(status, body), 403, "FORBIDDEN");
    assert_eq!(last_seq(&server, "alice", &id).await, 0, "nothing appended");

    let (status, _) = set_role(&server, "alice", &id, "bob", "admin").await;
    assert_eq!(status, 200);
    let (status, member) = set_role(&server, "bob", &id, "alice", "member").await;
    assert_eq!(status, 200, "{member}");
    assert_subset(&member, &json!({"userId": "alice", "role": "member"}));
    assert_eq!(last_seq(&server, "bob", &id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_of_groups_give_roles_and_only_to_members() {
    let server = server().start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let direct = conv_id(&server.http("alice").create_direct("carol").await);

    // a plain member: 403; a non-member: 404; someone not in the group: 404
    let refused = set_role(&server, "bob", &id, "bob", "admin").await;
    assert_http_error(&refused, 403, "FORBIDDEN");
    let outsider = set_role(&server, "mallory", &id, "bob", "admin").await;
    assert_http_error(&outsider, 404, "NOT_FOUND");
    let nobody = set_role(&server, "alice", &id, "zed", "admin").await;
    assert_http_error(&nobody, 404, "NOT_FOUND");
    // a direct conversation has no roles to change: 403; a bad role: 400
    let direct = set_role(&server, "alice", &direct, "carol", "admin").await;
    assert_http_error(&direct, 403, "FORBIDDEN");
    let bad = set_role(&server, "alice", &id, "bob", "owner").await;
    assert_http_error(&bad, 400, "INVALID_MESSAGE");
    assert_eq!(last_seq(&server, "alice", &id).await, 0);
}
