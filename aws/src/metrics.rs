//! Metrics as CloudWatch embedded-metric-format log lines: one JSON line on stdout
//! becomes a metric in the `Chat` namespace, by function name, with no API call.

use crate::lambda::optional;

/// Poison stream records the fan-out skipped.
pub const SKIPPED_METRIC: &str = "FanoutSkippedRecords";
/// Stream records whose fan-out failed (the batch is retried from them).
pub const FAILED_METRIC: &str = "FanoutFailedRecords";
/// Posts to connections that failed for a reason other than the connection being gone
/// (throttled past the retries, API errors): frames those clients get only by sync.
pub const FAILED_POSTS_METRIC: &str = "FailedPosts";

/// Prints one line counting `count` of `metric`.
pub(crate) fn emit(metric: &str, count: usize) {
    println!("{}", line(metric, count));
}

/// The line, with `level: ERROR`: Lambda's JSON log format filters lines by that field,
/// and keeps this one at any application log level but FATAL.
fn line(metric: &str, count: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let function = optional("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".to_owned());
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": now,
            "CloudWatchMetrics": [{
                "Namespace": "Chat",
                "Dimensions": [["FunctionName"]],
                "Metrics": [{ "Name": metric, "Unit": "Count" }],
            }],
        },
        "level": "ERROR",
        // Lambda reads a JSON line's level only with a valid timestamp beside it.
        "timestamp": aws_smithy_types::DateTime::from_millis(now as i64)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_default(),
        "FunctionName": function,
    });
    line[metric] = count.into();
    line.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn a_metric_is_one_embedded_metric_format_line_the_level_filter_keeps() {
        let line = line(SKIPPED_METRIC, 3);
        assert!(!line.contains('\n'), "one log line");
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Chat");
        assert_eq!(directive["Metrics"][0]["Name"], SKIPPED_METRIC);
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        // every dimension named is a member of the line, and so is the metric
        for name in directive["Dimensions"][0].as_array().unwrap() {
            assert!(v[name.as_str().unwrap()].is_string(), "{name}");
        }
        assert_eq!(v[SKIPPED_METRIC], 3);
        // Lambda's JSON log format filters by this field; a line without one would be
        // dropped if the application log level were raised above INFO.
        assert_eq!(v["level"], "ERROR");
        let timestamp = v["timestamp"].as_str().unwrap();
        assert!(
            timestamp.starts_with("20") && timestamp.ends_with('Z') && timestamp.contains('T'),
            "an RFC 3339 timestamp: {timestamp}"
        );
    }
}
