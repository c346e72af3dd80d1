//! `template.yaml` against the code: the tables (keys, indexes, stream, TTL) must be the
//! ones `aws/src/tables.rs` defines and the tests create, every function must name a
//! binary that exists, and every variable the functions require must be set.

use std::collections::BTreeSet;

use chat_aws::tables::{ALL, KeyAttr, TableDef};
use serde_yaml::Value;

const TEMPLATE: &str = include_str!("../../template.yaml");

/// A key schema: (attribute, HASH or RANGE) in order.
type Keys = Vec<(String, String)>;
/// An index: name, key schema, projection type.
type Index = (String, Keys, String);

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).expect("template.yaml parses")
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert!(!r.is_null(), "template.yaml has no resource {id}");
    r
}

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
fn every_function_runs_the_one_binary_with_the_handler_of_its_events() {
    // One binary (one link in the deploying profile): each function names its handler.
    let t = template();
    let bins_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/src/bin");
    let bins: Vec<String> = std::fs::read_dir(bins_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bins, vec!["chat-lambda.rs".to_owned()]);
    for (id, f) in functions(&t) {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(
            f["Metadata"]["BuildProperties"]["Binary"], "chat-lambda",
            "{id}"
        );
        let handler = f["Properties"]["Environment"]["Variables"]["CHAT_HANDLER"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} names no CHAT_HANDLER"));
        let events = &f["Properties"]["Events"];
        let expected = match id.as_str() {
            "HttpFunction" => "http",
            "FanoutFunction" => "stream",
            "ReplayFunction" => "replay",
            "SweepFunction" => "sweep",
            _ => "websocket",
        };
        assert_eq!(handler, expected, "{id}");
        if handler == "http" {
            assert!(events.as_mapping().is_some_and(|e| !e.is_empty()), "{id}");
        }
    }
}

#[test]
fn the_functions_get_every_variable_they_require() {
    let t = template();
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    for name in [
        "CHAT_TABLE_MAIN",
        "CHAT_TABLE_MESSAGES",
        "CHAT_TABLE_CONNECTIONS",
        "CHAT_JWT_SECRET_ARN",
        "CHAT_APIGW_ENDPOINT",
    ] {
        assert!(!vars[name].is_null(), "{name} is not set for the functions");
    }
    for var in [
        "CHAT_JWT_JWKS_URL",
        "CHAT_JWT_ISSUER",
        "CHAT_JWT_AUDIENCE",
        "CHAT_JWT_USER_CLAIM",
    ] {
        assert!(!vars[var].is_null(), "{var} is not set for the functions");
    }
    // A stack whose tokens nobody can sign, or with a key set but no issuer, is refused
    // before anything is created.
    let rules = &t["Rules"];
    let signer = format!("{:?}", rules["TokensHaveASigner"]["Assertions"]);
    assert!(
        signer.contains("JwtSecretArn") && signer.contains("JwksUrl"),
        "{signer}"
    );
    let issuer = format!("{:?}", rules["AKeySetNeedsAnIssuer"]);
    assert!(
        issuer.contains("JwksUrl")
            && issuer.contains("JwtIssuer")
            && issuer.contains("JwtAudience"),
        "{issuer}"
    );
    let pattern = t["Parameters"]["JwksUrl"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert_eq!(
        pattern, "(https://\\S+)?",
        "a key set is fetched over HTTPS only"
    );
}

#[test]
fn direct_delivery_and_the_sweeper_are_configured_by_parameters() {
    let t = template();
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        intrinsic(&vars["CHAT_DIRECT_FANOUT_MAX_MEMBERS"]),
        ("Ref".to_owned(), "DirectFanoutMaxMembers".to_owned())
    );
    assert_eq!(t["Parameters"]["DirectFanoutMaxMembers"]["Default"], 100);
    let sweep = &t["Resources"]["SweepFunction"]["Properties"];
    assert_eq!(
        sweep["Events"]["EveryMinute"]["Properties"]["Schedule"],
        "rate(1 minute)"
    );
    assert_eq!(
        intrinsic(&sweep["Environment"]["Variables"]["CHAT_IDLE_TIMEOUT_SECS"]),
        ("Ref".to_owned(), "IdleTimeoutSecs".to_owned())
    );
    let idle = &t["Parameters"]["IdleTimeoutSecs"];
    assert_eq!(
        (&idle["Default"], &idle["MinValue"], &idle["MaxValue"]),
        (&Value::from(150), &Value::from(30), &Value::from(150)),
        "the liveness window at most, twice the interval of liveness writes at least"
    );
    // It lists the users with connections from their index, and nothing reads it else.
    let reads_online = |f: &Value| {
        statements(f)
            .iter()
            .any(|s| format!("{:?}", s["Resource"]).contains("/index/online\""))
    };
    for (id, f) in functions(&t) {
        assert_eq!(reads_online(&f), id == "SweepFunction", "{id}");
    }
    // It runs well inside its minute.
    assert!(sweep["Timeout"].as_u64().unwrap() < 60);
}

/// A short-form intrinsic (`!GetAtt X.Arn`) as (function, argument).
fn intrinsic(v: &Value) -> (String, String) {
    match v {
        Value::Tagged(t) => (
            t.tag.to_string().trim_start_matches('!').to_owned(),
            t.value.as_str().expect("a scalar argument").to_owned(),
        ),
        other => panic!("not a short-form intrinsic: {other:?}"),
    }
}

#[test]
fn the_fan_out_mapping_retries_a_bounded_number_of_times_then_dead_letters() {
    let t = template();
    let fanout = resource(&t, "FanoutFunction");
    let mapping = resource(&t, "FanoutMapping");
    assert_eq!(mapping["Type"], "AWS::Lambda::EventSourceMapping");
    assert_eq!(
        intrinsic(&mapping["Properties"]["FunctionName"]),
        ("Ref".to_owned(), "FanoutFunction".to_owned())
    );
    assert_eq!(
        intrinsic(&mapping["Properties"]["EventSourceArn"]),
        ("GetAtt".to_owned(), "MessagesTable.StreamArn".to_owned())
    );
    let p = &mapping["Properties"];
    // Partial batch responses: the handler reports the record to resume from.
    assert_eq!(
        p["FunctionResponseTypes"].as_sequence().unwrap(),
        &[Value::from("ReportBatchItemFailures")]
    );
    // A failing record is isolated, retried a bounded number of times, and its range is
    // sent to the queue: the shard never stalls for the stream's 24 h.
    assert_eq!(p["BisectBatchOnFunctionError"], true);
    let retries = p["MaximumRetryAttempts"].as_i64().unwrap();
    assert!(
        (1..=10).contains(&retries),
        "MaximumRetryAttempts {retries}"
    );
    let age = p["MaximumRecordAgeInSeconds"].as_i64().unwrap();
    assert!(
        (60..86_400).contains(&age),
        "MaximumRecordAgeInSeconds {age}"
    );
    let on_failure = &p["DestinationConfig"]["OnFailure"];
    assert_eq!(
        intrinsic(&on_failure["Destination"]),
        ("GetAtt".to_owned(), "FanoutDeadLetterQueue.Arn".to_owned())
    );
    // Only INSERTs reach the function.
    assert_eq!(
        p["FilterCriteria"]["Filters"][0]["Pattern"],
        r#"{"eventName": ["INSERT"]}"#
    );

    // The queue keeps what it gets for its 14 days maximum, the function may send to it
    let queue = resource(&t, "FanoutDeadLetterQueue");
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    assert_eq!(queue["Properties"]["MessageRetentionPeriod"], 1_209_600);
    let may_send = fanout["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .any(|s| {
            s["Action"] == "sqs:SendMessage"
                && s["Resource"]
                    == mapping["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        });
    assert!(may_send, "the fan-out may send to its dead-letter queue");

    // AND alarms watch the queue's depth and the records skipped as poison
    let alarm = |id: &str| {
        let a = resource(&t, id);
        assert_eq!(a["Type"], "AWS::CloudWatch::Alarm", "{id}");
        assert_eq!(a["Properties"]["Threshold"], 0, "{id} fires on the first");
        assert_eq!(
            a["Properties"]["ComparisonOperator"], "GreaterThanThreshold",
            "{id}"
        );
        a["Properties"].clone()
    };
    let dead = alarm("FanoutDeadLettersAlarm");
    assert_eq!(
        (dead["Namespace"].as_str(), dead["MetricName"].as_str()),
        (Some("AWS/SQS"), Some("ApproximateNumberOfMessagesVisible"))
    );
    assert_eq!(
        intrinsic(&dead["Dimensions"][0]["Value"]),
        (
            "GetAtt".to_owned(),
            "FanoutDeadLetterQueue.QueueName".to_owned()
        )
    );
    let skipped = alarm("FanoutSkippedRecordsAlarm");
    assert_eq!(
        (
            skipped["Namespace"].as_str(),
            skipped["MetricName"].as_str()
        ),
        (Some("Chat"), Some(chat_aws::lambda::SKIPPED_METRIC))
    );
    assert_eq!(skipped["Dimensions"][0]["Name"], "FunctionName");
    assert_eq!(
        intrinsic(&skipped["Dimensions"][0]["Value"]),
        ("Ref".to_owned(), "FanoutFunction".to_owned())
    );
}

/// The functions behind the WebSocket API's routes.
const WEBSOCKET_FUNCTIONS: [&str; 8] = [
    "ConnectFunction",
    "DisconnectFunction",
    "DefaultFunction",
    "SendFunction",
    "ReadFunction",
    "DeliveredFunction",
    "TypingFunction",
    "HeartbeatFunction",
];

/// The `Statement`s of a function's inline policies; a statement under a condition
/// (`!If [Condition, statement, !Ref AWS::NoValue]`) as if the condition held.
fn statements(function: &Value) -> Vec<Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .expect("inline policies")
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .map(|s| match s {
            Value::Tagged(t) if t.tag == "If" => t.value[1].clone(),
            s => s,
        })
        .collect()
}

#[test]
fn every_function_that_handles_frames_or_events_may_close_connections() {
    // A frame or an event that finds a connection whose token expired deletes it
    // (DeleteConnection), whichever function it reaches.
    let t = template();
    let all = functions(&t);
    assert_eq!(all.len(), 12, "every function of the template");
    for (id, function) in all {
        let may_close = statements(&function).iter().any(|s| {
            s["Action"] == "execute-api:ManageConnections"
                && matches!(intrinsic(&s["Resource"]), (f, arn) if f == "Sub"
                    && arn.contains("${WebSocketApi}/${StageName}/*/@connections/*"))
        });
        assert!(may_close, "{id} may not manage this API's connections");
    }
}

/// The functions: (logical id, resource).
fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| (id.as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[test]
fn no_function_gets_more_than_its_inline_statements() {
    // SAM attaches a managed policy for a policy name or template in `Policies`, and for
    // some events: a DynamoDB stream event brings AWSLambdaDynamoDBExecutionRole, which
    // reads every stream of the account.
    let t = template();
    for (id, f) in functions(&t) {
        for policy in f["Properties"]["Policies"].as_sequence().unwrap() {
            assert!(
                policy["Statement"].is_sequence(),
                "{id}: a policy that is not inline statements: {policy:?}"
            );
        }
        // An API route or a schedule brings a permission to invoke, no policy.
        if let Some(events) = f["Properties"]["Events"].as_mapping() {
            for (name, event) in events {
                assert!(
                    event["Type"] == "HttpApi" || event["Type"] == "Schedule",
                    "{id}: event {name:?}"
                );
            }
        }
        for s in statements(&f) {
            assert_ne!(s["Resource"], "*", "{id}: a statement on every resource");
            let actions: Vec<&str> = match &s["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Sequence(list) => list.iter().filter_map(Value::as_str).collect(),
                other => panic!("{id}: actions {other:?}"),
            };
            if actions.iter().any(|a| a.starts_with("dynamodb:GetRecords")) {
                assert_eq!(
                    intrinsic(&s["Resource"]),
                    ("Sub".to_owned(), "${MessagesTable.Arn}/stream/*".to_owned()),
                    "{id} reads only the messages table's stream"
                );
            }
        }
    }
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
fn every_log_is_kept_for_the_retention_and_access_logs_never_hold_tokens() {
    let t = template();
    let kept_for_the_retention = |id: &str| {
        let group = resource(&t, id);
        assert_eq!(group["Type"], "AWS::Logs::LogGroup", "{id}");
        assert_eq!(
            intrinsic(&group["Properties"]["RetentionInDays"]),
            ("Ref".to_owned(), "LogRetentionDays".to_owned()),
            "{id}"
        );
    };
    for (id, f) in functions(&t) {
        let (func, group) = intrinsic(&f["Properties"]["LoggingConfig"]["LogGroup"]);
        assert_eq!(func, "Ref", "{id}");
        kept_for_the_retention(&group);
    }
    let stage = &resource(&t, "WebSocketStage")["Properties"]["AccessLogSettings"];
    let http = &resource(&t, "HttpApi")["Properties"]["AccessLogSettings"];
    for (api, settings) in [("WebSocket", stage), ("HTTP", http)] {
        let (_, destination) = intrinsic(&settings["DestinationArn"]);
        kept_for_the_retention(destination.trim_end_matches(".Arn"));
        let format = settings["Format"].as_str().expect("an access log format");
        serde_json::from_str::<serde_json::Value>(format).expect("a JSON access log line");
        // Tokens travel in the query string (and may in a header): neither is logged.
        for secret in [
            "querystring",
            "$context.path",
            "header",
            "$request",
            "authorizer",
        ] {
            assert!(
                !format.to_lowercase().contains(&secret.to_lowercase()),
                "{api} access logs hold {secret}"
            );
        }
    }
    assert_eq!(
        intrinsic(&t["Globals"]["Function"]["Tracing"]),
        ("Ref".to_owned(), "Tracing".to_owned())
    );
    // The account's logs role outlives the stack: the Region's setting points at it.
    let role = resource(&t, "ApiGatewayLogsRoleResource");
    assert_eq!(role["DeletionPolicy"], "Retain");
    assert_eq!(role["UpdateReplacePolicy"], "Retain");
}

#[test]
fn the_apis_are_throttled_below_the_account_and_connect_storms_are_contained() {
    let t = template();
    let number = |name: &str| {
        let p = &t["Parameters"][name];
        assert_eq!(p["Type"], "Number", "{name}");
        p["Default"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} default"))
    };
    let refers = |v: &Value, name: &str| {
        assert_eq!(intrinsic(v), ("Ref".to_owned(), name.to_owned()));
    };
    // The account's default is 10,000 requests per second per Region, for every API.
    let ws = &resource(&t, "WebSocketStage")["Properties"];
    refers(
        &ws["DefaultRouteSettings"]["ThrottlingRateLimit"],
        "WebSocketRateLimit",
    );
    refers(
        &ws["DefaultRouteSettings"]["ThrottlingBurstLimit"],
        "WebSocketRateLimit",
    );
    // API Gateway refuses settings for a route that does not exist yet.
    let depends = format!("{:?}", resource(&t, "WebSocketStage")["DependsOn"]);
    assert!(depends.contains("ConnectRoute"), "{depends}");
    let connect = &ws["RouteSettings"]["$connect"];
    refers(&connect["ThrottlingRateLimit"], "ConnectRateLimit");
    refers(&connect["ThrottlingBurstLimit"], "ConnectRateLimit");
    let http = &resource(&t, "HttpApi")["Properties"]["DefaultRouteSettings"];
    refers(&http["ThrottlingRateLimit"], "HttpRateLimit");
    refers(&http["ThrottlingBurstLimit"], "HttpRateLimit");
    let (ws_rate, connect_rate, http_rate) = (
        number("WebSocketRateLimit"),
        number("ConnectRateLimit"),
        number("HttpRateLimit"),
    );
    assert!(
        ws_rate + http_rate < 10_000,
        "the two APIs together stay under the account"
    );
    assert!(
        connect_rate < ws_rate,
        "$connect, the dearest route, is the most limited"
    );
    // Reserved concurrency: $connect capped, the fan-out guaranteed.
    for (function, parameter) in [
        ("ConnectFunction", "ConnectConcurrency"),
        ("FanoutFunction", "FanoutConcurrency"),
    ] {
        let reserved = &resource(&t, function)["Properties"]["ReservedConcurrentExecutions"];
        assert!(
            format!("{reserved:?}").contains(parameter),
            "{function} reserved concurrency: {reserved:?}"
        );
        assert!(number(parameter) > 0, "{parameter} is on by default");
    }
}

#[test]
fn the_token_secret_is_in_secrets_manager_and_only_the_verifying_functions_read_it() {
    let t = template();
    // No secret in any function's environment: only where it is.
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    for var in ["CHAT_JWT_SECRET", "CHAT_JWT_PREVIOUS_SECRET"] {
        assert!(
            vars[var].is_null(),
            "{var} would put a secret in the environment"
        );
    }
    for (id, f) in functions(&t) {
        let own = &f["Properties"]["Environment"]["Variables"];
        assert!(own["CHAT_JWT_SECRET"].is_null(), "{id}");
    }
    for (_, p) in t["Parameters"].as_mapping().unwrap() {
        assert_ne!(p["NoEcho"], true, "no parameter carries a secret any more");
    }
    assert_eq!(t["Parameters"]["JwtSecretArn"]["Default"], "create");
    // The stack's own secret is long, random and generated by Secrets Manager.
    let secret = resource(&t, "TokenSecret");
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    assert_eq!(secret["Condition"], "CreateTokenSecret");
    let generated = &secret["Properties"]["GenerateSecretString"];
    assert!(generated["PasswordLength"].as_u64().unwrap() >= 32);
    assert!(secret["Properties"]["SecretString"].is_null());
    // Exactly the functions that verify tokens may read it, that one secret only.
    for (id, f) in functions(&t) {
        let reads: Vec<_> = statements(&f)
            .into_iter()
            .filter(|s| format!("{s:?}").contains("secretsmanager"))
            .collect();
        if matches!(id.as_str(), "ConnectFunction" | "HttpFunction") {
            assert_eq!(reads.len(), 1, "{id}: {reads:?}");
            assert_eq!(reads[0]["Action"], "secretsmanager:GetSecretValue", "{id}");
            let resource = format!("{:?}", reads[0]["Resource"]);
            assert!(
                resource.contains("CreateTokenSecret")
                    && resource.contains("\"TokenSecret\"")
                    && resource.contains("\"JwtSecretArn\""),
                "{id}: {resource}"
            );
            let policies = format!("{:?}", f["Properties"]["Policies"]);
            assert!(
                policies.contains("HasTokenSecret"),
                "{id}: granted only with a secret"
            );
        } else {
            assert!(reads.is_empty(), "{id} does not verify tokens: {reads:?}");
        }
    }
}

#[test]
fn push_goes_through_the_named_applications_of_this_region_only() {
    let t = template();
    for name in [
        "ApnsPlatformApplication",
        "ApnsSandboxPlatformApplication",
        "FcmPlatformApplication",
    ] {
        let p = &t["Parameters"][name];
        assert_eq!(p["Default"], "", "{name} is optional");
        assert!(p["AllowedPattern"].is_string(), "{name} is checked");
    }
    // The ARNs are built from the stack's own Region and account.
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    for var in [
        "CHAT_SNS_APNS_ARN",
        "CHAT_SNS_APNS_SANDBOX_ARN",
        "CHAT_SNS_FCM_ARN",
    ] {
        let built = format!("{:?}", vars[var]);
        assert!(
            built.contains("${AWS::Region}:${AWS::AccountId}:app/"),
            "{var}: {built}"
        );
    }
    // SNS permissions name those applications and their endpoints, nothing wider.
    for (id, f) in functions(&t) {
        for s in statements(&f) {
            if !format!("{:?}", s["Action"]).contains("sns:") {
                continue;
            }
            for resource in s["Resource"].as_sequence().expect("a list of ARNs") {
                let (_, arn) = intrinsic(resource);
                let scoped = arn.ends_with("PlatformApplication}")
                    || arn.ends_with("PlatformApplication}/*");
                assert!(scoped, "{id}: SNS on {arn}");
            }
        }
    }
    // And a Region without SNS mobile push refuses a stack that names an application.
    let rule = &t["Rules"]["MobilePushRegion"];
    assert!(format!("{rule:?}").contains("AWS::Region"), "{rule:?}");
}

#[test]
fn each_api_can_have_a_custom_domain_of_its_own() {
    // API Gateway cannot map a WebSocket API and an HTTP API to one domain.
    let t = template();
    for (domain, mapping, api, condition) in [
        (
            "WebSocketDomain",
            "WebSocketDomainMapping",
            "WebSocketApi",
            "HasWebSocketDomain",
        ),
        (
            "HttpDomain",
            "HttpDomainMapping",
            "HttpApi",
            "HasHttpDomain",
        ),
    ] {
        let d = resource(&t, domain);
        assert_eq!(d["Condition"], condition, "{domain} only when named");
        let config = &d["Properties"]["DomainNameConfigurations"][0];
        assert_eq!(config["EndpointType"], "REGIONAL");
        assert_eq!(config["SecurityPolicy"], "TLS_1_2");
        let m = resource(&t, mapping);
        assert_eq!(m["Condition"], condition);
        assert_eq!(
            intrinsic(&m["Properties"]["ApiId"]),
            ("Ref".to_owned(), api.to_owned())
        );
        assert_eq!(
            intrinsic(&m["Properties"]["DomainName"]),
            ("Ref".to_owned(), domain.to_owned())
        );
    }
    assert!(t["Rules"]["DomainsNeedACertificate"].is_mapping());
    for output in ["WebSocketDomainTarget", "HttpDomainTarget"] {
        assert!(
            t["Outputs"][output].is_mapping(),
            "{output}: where DNS points"
        );
    }
}

#[test]
fn alarms_watch_what_means_trouble() {
    let t = template();
    let alarm = |id: &str| resource(&t, id)["Properties"].clone();
    // Failed fan-out records are counted by the function (a partial batch response is
    // a successful invocation), under the name the code emits.
    let failed = alarm("FanoutFailedRecordsAlarm");
    assert_eq!(
        (failed["Namespace"].as_str(), failed["MetricName"].as_str()),
        (Some("Chat"), Some(chat_aws::lambda::FAILED_METRIC))
    );
    assert_eq!(
        intrinsic(&failed["Dimensions"][0]["Value"]),
        ("Ref".to_owned(), "FanoutFunction".to_owned())
    );
    let posts = alarm("FanoutFailedPostsAlarm");
    assert_eq!(
        (posts["Namespace"].as_str(), posts["MetricName"].as_str()),
        (Some("Chat"), Some(chat_aws::lambda::FAILED_POSTS_METRIC))
    );
    // Every WebSocket function's crashes and timeouts count, and $connect throttling.
    let errors = format!("{:?}", alarm("WebSocketFunctionErrorsAlarm")["Metrics"]);
    for function in WEBSOCKET_FUNCTIONS {
        assert!(
            errors.contains(function),
            "{function} errors are not watched"
        );
    }
    assert_eq!(alarm("ConnectThrottlesAlarm")["MetricName"], "Throttles");
    // Refused $connects (expired tokens) are 4xx of the integration: not trouble.
    let ws = alarm("WebSocketErrorsAlarm");
    assert_eq!(ws["MetricName"], "ExecutionError");
    for (id, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"] == "AWS::CloudWatch::Alarm" {
            assert_ne!(r["Properties"]["MetricName"], "IntegrationError", "{id:?}");
        }
    }
}

#[test]
fn only_the_routes_that_always_answer_have_a_route_response() {
    // A route response sends a frame for every invocation, an empty one when there is
    // no answer: routes whose answer is sometimes omitted post it instead.
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let answered: BTreeSet<String> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::ApiGatewayV2::RouteResponse")
        .map(|r| {
            let (_, route) = intrinsic(&r["Properties"]["RouteId"]);
            resource(&t, &route)["Properties"]["RouteKey"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for r in resources.values() {
        if r["Type"] != "AWS::ApiGatewayV2::Route" || r["Properties"]["ApiId"].is_null() {
            continue;
        }
        let key = r["Properties"]["RouteKey"].as_str().unwrap();
        if key == "$connect" || key == "$disconnect" || key.contains(' ') {
            continue; // the handshake routes, and HTTP routes
        }
        let one_way = chat_aws::lambda::ONE_WAY_ROUTES.contains(&key);
        assert_eq!(answered.contains(key), !one_way, "route {key}");
        assert_eq!(
            r["Properties"]["RouteResponseSelectionExpression"].is_null(),
            one_way,
            "route {key}"
        );
    }
    let expected = ["$default", "delete", "edit", "heartbeat", "react", "send"];
    assert_eq!(
        answered,
        expected.map(str::to_owned).into(),
        "the routes that answer"
    );
}

/// The actions of a statement.
fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        other => panic!("actions {other:?}"),
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

#[test]
fn each_function_gets_only_the_s3_actions_it_uses_on_attachment_objects_only() {
    let t = template();
    let expected: &[(&str, &[&str])] = &[
        // Presigns uploads and downloads (the URLs carry its permissions); sends;
        // deletes a replaced avatar.
        (
            "HttpFunction",
            &[
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:PutObject",
                "s3:PutObjectTagging",
            ],
        ),
        // HeadObject before a send; tags the attachment `message`.
        ("SendFunction", &["s3:GetObject", "s3:PutObjectTagging"]),
        // Deletes a deleted message's bytes.
        ("FanoutFunction", &["s3:DeleteObject"]),
        ("ReplayFunction", &["s3:DeleteObject"]),
    ];
    let mut listers = Vec::new();
    for (id, function) in functions(&t) {
        let mut granted: Vec<String> = Vec::new();
        for s in statements(&function) {
            let s3: Vec<String> = actions(&s)
                .into_iter()
                .filter(|a| a.starts_with("s3:"))
                .collect();
            if s3.is_empty() {
                continue;
            }
            if s3 == ["s3:ListBucket"] {
                // HeadObject of a missing key is a 404 only to a caller who may list;
                // listing of attachment keys only.
                assert_eq!(
                    intrinsic(&s["Resource"]),
                    ("GetAtt".to_owned(), "AttachmentBucket.Arn".to_owned()),
                    "{id}"
                );
                assert_eq!(
                    s["Condition"]["StringLike"]["s3:prefix"], "attachments/*",
                    "{id}"
                );
                listers.push(id.clone());
                continue;
            }
            assert_eq!(
                intrinsic(&s["Resource"]),
                (
                    "Sub".to_owned(),
                    "${AttachmentBucket.Arn}/attachments/*".to_owned()
                ),
                "{id}: S3 on the attachment objects only"
            );
            granted.extend(s3);
        }
        granted.sort();
        let want = expected
            .iter()
            .find(|(f, _)| *f == id)
            .map_or(&[][..], |(_, a)| a);
        assert_eq!(granted, want, "{id}");
    }
    // The functions that ask whether an upload is complete (HeadObject).
    listers.sort();
    assert_eq!(listers, ["HttpFunction", "SendFunction"]);
}

#[test]
fn the_dashboard_and_the_metric_alarms_show_what_the_code_emits() {
    use chat_shared::telemetry;
    let t = template();
    // Every metric of the namespace Chat the code emits: the service's, the glue's.
    let emitted = [
        telemetry::APPEND_SECONDS,
        telemetry::FANOUT_LAG_SECONDS,
        telemetry::FRAMES_POSTED,
        telemetry::POSTS_GONE,
        telemetry::PUSHES,
        telemetry::CONNECTIONS_CLOSED,
        telemetry::ERRORS,
        chat_aws::metrics::SKIPPED_METRIC,
        chat_aws::metrics::FAILED_METRIC,
        chat_aws::metrics::FAILED_POSTS_METRIC,
    ];
    // The alarms on the service's metrics: the lag of both paths at p99, INTERNAL errors.
    for (id, dimension, value) in [
        ("FanoutLagAlarm", "path", "feed"),
        ("DirectLagAlarm", "path", "direct"),
        ("InternalErrorsAlarm", "code", "INTERNAL"),
    ] {
        let a = &resource(&t, id)["Properties"];
        assert_eq!(a["Namespace"], "Chat", "{id}");
        assert!(emitted.contains(&a["MetricName"].as_str().unwrap()), "{id}");
        assert_eq!(a["Dimensions"][0]["Name"], dimension, "{id}");
        assert_eq!(a["Dimensions"][0]["Value"], value, "{id}");
        assert_eq!(
            a["Dimensions"].as_sequence().unwrap().len(),
            1,
            "{id}: over every function"
        );
    }
    for id in ["FanoutLagAlarm", "DirectLagAlarm"] {
        assert_eq!(
            resource(&t, id)["Properties"]["ExtendedStatistic"],
            "p99",
            "{id}"
        );
    }
    // The dashboard's body is JSON once its ${...} are filled, and shows only metrics
    // that exist: the code's in Chat, Lambda's own in AWS/Lambda.
    let body = match &resource(&t, "Dashboard")["Properties"]["DashboardBody"] {
        Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
        other => panic!("a !Sub body: {other:?}"),
    };
    let mut filled = String::new();
    let mut rest = body.as_str();
    while let Some(start) = rest.find("${") {
        filled.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        filled.push('x');
        rest = &rest[end + 1..];
    }
    filled.push_str(rest);
    let dashboard: serde_json::Value = serde_json::from_str(&filled).expect("dashboard JSON");
    let widgets = dashboard["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 6);
    let mut shown = 0;
    for widget in widgets {
        for metric in widget["properties"]["metrics"].as_array().unwrap() {
            let row = metric.as_array().unwrap();
            if row[0] == "..." {
                continue;
            }
            let (namespace, name) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
            match namespace {
                "Chat" => assert!(emitted.contains(&name), "{name} is not emitted"),
                "AWS/Lambda" => assert!(["Invocations", "Errors", "IteratorAge"].contains(&name)),
                other => panic!("namespace {other}"),
            }
            shown += 1;
        }
    }
    assert!(shown >= 20, "{shown}");
}
