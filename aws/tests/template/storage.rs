//! The tables (keys, indexes, stream, TTL, backups) and the attachment bucket.

use super::*;

/// A key schema: (attribute, HASH or RANGE) in order.
type Keys = Vec<(String, String)>;

/// An index: name, key schema, projection type.
type Index = (String, Keys, String);

fn key_schema(v: &Value) -> Keys {
    v.as_sequence()
        .expect("a KeySchema list")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected_keys(hash: KeyAttr, range: Option<KeyAttr>) -> Keys {
    let mut keys = vec![(hash.name.to_owned(), "HASH".to_owned())];
    keys.extend(range.map(|r| (r.name.to_owned(), "RANGE".to_owned())));
    keys
}

fn check_table(t: &Value, def: &TableDef) {
    let table = resource(t, def.logical_id);
    assert_eq!(table["Type"], "AWS::DynamoDB::Table", "{}", def.logical_id);
    let p = &table["Properties"];
    assert_eq!(
        key_schema(&p["KeySchema"]),
        expected_keys(def.hash, def.range),
        "{} key schema",
        def.logical_id
    );
    let mut attrs: BTreeSet<(String, String)> = BTreeSet::new();
    for a in [Some(def.hash), def.range].into_iter().flatten() {
        attrs.insert((a.name.to_owned(), a.kind.to_owned()));
    }
    for index in def.indexes {
        for a in [Some(index.hash), index.range].into_iter().flatten() {
            attrs.insert((a.name.to_owned(), a.kind.to_owned()));
        }
    }
    let declared: BTreeSet<(String, String)> = p["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(declared, attrs, "{} attribute definitions", def.logical_id);
    let indexes: Vec<Index> = p["GlobalSecondaryIndexes"]
        .as_sequence()
        .map(|list| {
            list.iter()
                .map(|i| {
                    (
                        i["IndexName"].as_str().unwrap().to_owned(),
                        key_schema(&i["KeySchema"]),
                        i["Projection"]["ProjectionType"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<Index> = def
        .indexes
        .iter()
        .map(|i| {
            (
                i.name.to_owned(),
                expected_keys(i.hash, i.range),
                i.projection().to_owned(),
            )
        })
        .collect();
    assert_eq!(indexes, expected, "{} indexes", def.logical_id);
    assert_eq!(
        p["StreamSpecification"]["StreamViewType"].as_str(),
        def.stream,
        "{} stream",
        def.logical_id
    );
    assert_eq!(
        p["TimeToLiveSpecification"]["AttributeName"].as_str(),
        def.ttl_attribute,
        "{} TTL attribute",
        def.logical_id
    );
    assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true);
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
}

#[test]
fn the_template_tables_are_the_code_tables() {
    let t = template();
    for def in &ALL {
        check_table(&t, def);
    }
    let tables = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::DynamoDB::Table")
        .count();
    assert_eq!(tables, ALL.len(), "no table beyond the code's");
}

#[test]
fn the_data_tables_survive_the_stack_and_only_they_are_backed_up() {
    let t = template();
    for id in ["MainTable", "MessagesTable"] {
        let table = resource(&t, id);
        // Deleting the stack, or a change that replaces the table, keeps it.
        assert_eq!(table["DeletionPolicy"], "Retain", "{id}");
        assert_eq!(table["UpdateReplacePolicy"], "Retain", "{id}");
        let p = &table["Properties"];
        assert_eq!(p["DeletionProtectionEnabled"], true, "{id}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{id} can be restored"
        );
    }
    // Connections live two hours: backing them up buys nothing.
    let connections = &resource(&t, "ConnectionsTable")["Properties"];
    assert!(connections["PointInTimeRecoverySpecification"].is_null());
    // Every table is encrypted at rest by DynamoDB's own key, which is free; the AWS
    // managed key (SSEEnabled: true) bills a KMS request per key refresh for the same.
    // Said explicitly: a stack made with the managed key moves off it on update.
    for (id, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"] == "AWS::DynamoDB::Table" {
            let sse = &r["Properties"]["SSESpecification"];
            assert_eq!(sse["SSEEnabled"], false, "{id:?}");
            assert!(sse["KMSMasterKeyId"].is_null(), "{id:?}");
        }
    }
}

#[test]
fn the_attachment_bucket_is_private_encrypted_tls_only_and_expires_what_nothing_keeps() {
    let t = template();
    let bucket = resource(&t, "AttachmentBucket");
    assert_eq!(bucket["Type"], "AWS::S3::Bucket");
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    let p = &bucket["Properties"];
    // Unversioned: a deleted object is gone, not kept as a noncurrent version.
    assert!(p["VersioningConfiguration"].is_null());
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(p["PublicAccessBlockConfiguration"][flag], true, "{flag}");
    }
    assert_eq!(
        p["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        "BucketOwnerEnforced"
    );
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    // CORS: the web app uploads (PUT) and downloads (GET), sending the signed headers.
    let cors = &p["CorsConfiguration"]["CorsRules"][0];
    assert_eq!(
        cors["AllowedMethods"],
        serde_yaml::from_str::<Value>("[PUT, GET]").unwrap()
    );
    assert_eq!(intrinsic(&cors["AllowedOrigins"]).0, "Ref");
    for h in ["content-type", "if-none-match", "x-amz-tagging"] {
        assert!(
            cors["AllowedHeaders"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|v| v == h),
            "{h}"
        );
    }
    // Lifecycle: by the `chat-use` tag aws/src/s3.rs writes.
    let rules = p["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    let rule = |tag: &str| {
        rules
            .iter()
            .find(|r| r["TagFilters"][0]["Value"] == tag)
            .unwrap_or_else(|| panic!("no lifecycle rule for {tag}"))
    };
    for r in rules.iter().filter(|r| !r["TagFilters"].is_null()) {
        assert_eq!(r["TagFilters"][0]["Key"], chat_aws::s3::USE_TAG);
    }
    assert_eq!(rule("unused")["ExpirationInDays"], 1);
    assert_eq!(rule("unused")["Status"], "Enabled");
    // With the retention: `!If [KeepMessagesForever, 1, !Ref RetentionDays]`, and the
    // rule disabled when messages are kept forever.
    let condition = |v: &Value| match v {
        Value::Tagged(t) if t.tag == "!If" => t.value[0].as_str().map(str::to_owned),
        _ => None,
    };
    for field in ["ExpirationInDays", "Status"] {
        assert_eq!(
            condition(&rule("message")[field]).as_deref(),
            Some("KeepMessagesForever"),
            "{field}"
        );
    }
    assert!(
        rules
            .iter()
            .all(|r| r["TagFilters"][0]["Value"] != "avatar")
    );
    // TLS only.
    let policy = resource(&t, "AttachmentBucketPolicy");
    let deny = &policy["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Principal"], "*");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
    // The functions know the bucket and the limit.
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        intrinsic(&env["CHAT_ATTACHMENT_BUCKET"]),
        ("Ref".to_owned(), "AttachmentBucket".to_owned())
    );
    assert_eq!(
        intrinsic(&env["CHAT_MAX_ATTACHMENT_BYTES"]),
        ("Ref".to_owned(), "MaxAttachmentBytes".to_owned())
    );
}
