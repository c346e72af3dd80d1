//! Running it: logs, throttles, custom domains, alarms and the dashboard.

use super::*;

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
