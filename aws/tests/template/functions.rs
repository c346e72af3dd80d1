//! The functions: one binary, their handlers, their variables, the fan-out mapping and
//! the WebSocket routes.

use super::*;

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
