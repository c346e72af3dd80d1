//! Metrics as CloudWatch embedded-metric-format (EMF) log lines: one JSON line on stdout
//! becomes metrics in the `Chat` namespace, by function name, with no API call.
//!
//! Two sources write them:
//! - the service's metrics (`chat_shared::telemetry`: append latency, fan-out lag by
//!   path, frames posted, posts gone, pushes, connections closed, errors by code),
//!   recorded through the `metrics` facade into [`EmfRecorder`], which a function
//!   installs at start ([`install`]) and writes out after each event ([`flush`]): one
//!   line per metric and label set, a histogram's values as an EMF value array (up to
//!   100 per line), from which CloudWatch computes percentiles. Each is published by
//!   function and over all functions (its labels alone), which the alarms watch;
//! - the glue's own counts ([`emit`]): the fan-out's skipped and failed records, the
//!   posts that failed.
//!
//! Every line carries `level: ERROR`: Lambda's JSON log format filters lines by that
//! field (a line without one counts as INFO), and a metric must survive any
//! application log level but FATAL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{Value, json};

use crate::lambda::optional;

/// Poison stream records the fan-out skipped.
pub const SKIPPED_METRIC: &str = "FanoutSkippedRecords";
/// Stream records whose fan-out failed (the batch is retried from them).
pub const FAILED_METRIC: &str = "FanoutFailedRecords";
/// Posts to connections that failed for a reason other than the connection being gone
/// (throttled past the retries, API errors): frames those clients get only by sync.
pub const FAILED_POSTS_METRIC: &str = "FailedPosts";

/// The most values of one metric in one line (CloudWatch's limit per metric).
const VALUES_PER_LINE: usize = 100;

/// Prints one line counting `count` of `metric`.
pub(crate) fn emit(metric: &str, count: usize) {
    let mut sample = Sample::new(metric, Vec::new());
    sample.add(Value::from(count), "Count");
    println!("{}", sample.line(now_ms()));
}

/// What one metric and label set gathered during an invocation.
#[derive(Debug, Clone, PartialEq)]
enum Gathered {
    Count(u64),
    Values(Vec<f64>),
}

type Series = BTreeMap<(String, Vec<(String, String)>), Gathered>;

/// Gathers the `metrics` facade's counters and histograms until [`EmfRecorder::drain`].
/// Gauges are not used by the service and record nothing.
#[derive(Debug, Clone, Default)]
pub struct EmfRecorder {
    series: Arc<Mutex<Series>>,
}

/// One series' handle, as the facade holds it.
struct Handle {
    id: (String, Vec<(String, String)>),
    series: Arc<Mutex<Series>>,
}

impl Handle {
    fn update(&self, f: impl FnOnce(&mut Gathered)) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        f(series.entry(self.id.clone()).or_insert(Gathered::Count(0)));
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.update(|g| match g {
            Gathered::Count(c) => *c += value,
            Gathered::Values(_) => {}
        });
    }

    fn absolute(&self, value: u64) {
        self.update(|g| *g = Gathered::Count(value));
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.update(|g| match g {
            Gathered::Values(v) => v.push(value),
            other => *other = Gathered::Values(vec![value]),
        });
    }
}

impl EmfRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        Arc::new(Handle {
            id: (key.name().to_owned(), labels),
            series: self.series.clone(),
        })
    }

    /// The lines of what was gathered since the last drain, which it forgets.
    pub fn drain(&self, now_ms: u128) -> Vec<String> {
        let series = std::mem::take(&mut *self.series.lock().unwrap_or_else(|e| e.into_inner()));
        let mut lines = Vec::new();
        for ((name, labels), gathered) in series {
            match gathered {
                Gathered::Count(0) => {}
                Gathered::Count(count) => {
                    let mut sample = Sample::new(&name, labels);
                    sample.add(Value::from(count), "Count");
                    lines.push(sample.line(now_ms));
                }
                Gathered::Values(values) => {
                    for chunk in values.chunks(VALUES_PER_LINE) {
                        let mut sample = Sample::new(&name, labels.clone());
                        sample.add(Value::from(chunk.to_vec()), unit_of(&name));
                        lines.push(sample.line(now_ms));
                    }
                }
            }
        }
        lines
    }
}

/// The CloudWatch unit of a histogram, by the Prometheus-style name's suffix.
fn unit_of(name: &str) -> &'static str {
    if name.ends_with("_seconds") {
        "Seconds"
    } else {
        "None"
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

static INSTALLED: OnceLock<EmfRecorder> = OnceLock::new();

/// Makes an [`EmfRecorder`] the process's metrics recorder (once; later calls do
/// nothing). A function calls it at start, then [`flush`] after each event.
pub fn install() {
    let recorder = EmfRecorder::default();
    if INSTALLED.set(recorder.clone()).is_ok() {
        // Fails only if another recorder is installed: then that one records.
        let _ = metrics::set_global_recorder(recorder);
    }
}

/// Runs the handling of one event, then [`flush`]es what it recorded.
pub async fn flushed<T>(handling: impl std::future::Future<Output = T>) -> T {
    let out = handling.await;
    flush();
    out
}

/// Writes what the installed recorder gathered during the event just handled.
pub fn flush() {
    if let Some(recorder) = INSTALLED.get() {
        for line in recorder.drain(now_ms()) {
            println!("{line}");
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One EMF line: a metric, its labels as dimensions beside the function's name.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: Value,
    unit: &'static str,
}

impl Sample {
    fn new(name: &str, labels: Vec<(String, String)>) -> Self {
        Self {
            name: name.to_owned(),
            labels,
            value: Value::Null,
            unit: "None",
        }
    }

    fn add(&mut self, value: Value, unit: &'static str) {
        self.value = value;
        self.unit = unit;
    }

    fn line(&self, now_ms: u128) -> String {
        let function = optional("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".to_owned());
        // By function, and the same over every function (what the alarms watch).
        let labels: Vec<String> = self.labels.iter().map(|(k, _)| k.clone()).collect();
        let mut by_function = vec!["FunctionName".to_owned()];
        by_function.extend(labels.iter().cloned());
        let mut line = json!({
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": "Chat",
                    "Dimensions": [by_function, labels],
                    "Metrics": [{ "Name": self.name, "Unit": self.unit }],
                }],
            },
            "level": "ERROR",
            // Lambda reads a JSON line's level only with a valid timestamp beside it.
            "timestamp": aws_smithy_types::DateTime::from_millis(now_ms as i64)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap_or_default(),
            "FunctionName": function,
        });
        for (k, v) in &self.labels {
            line[k.as_str()] = Value::from(v.as_str());
        }
        line[self.name.as_str()] = self.value.clone();
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks every EMF line must pass: one line, a directive in namespace `Chat`
    /// naming the metric, every dimension a member, the level Lambda keeps.
    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "one log line");
        let v: Value = serde_json::from_str(line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Chat");
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        for set in directive["Dimensions"].as_array().unwrap() {
            for name in set.as_array().unwrap() {
                assert!(v[name.as_str().unwrap()].is_string(), "{name}");
            }
        }
        let metric = directive["Metrics"][0]["Name"].as_str().unwrap();
        assert!(!v[metric].is_null(), "the metric's value is a member");
        assert_eq!(v["level"], "ERROR");
        let timestamp = v["timestamp"].as_str().unwrap();
        assert!(timestamp.starts_with("20") && timestamp.ends_with('Z') && timestamp.contains('T'));
        v
    }

    #[test]
    fn a_count_is_one_embedded_metric_format_line_the_level_filter_keeps() {
        let mut sample = Sample::new(SKIPPED_METRIC, Vec::new());
        sample.add(Value::from(3), "Count");
        let v = parse(&sample.line(now_ms()));
        assert_eq!(v[SKIPPED_METRIC], 3);
    }

    #[test]
    fn the_facades_counters_and_histograms_become_lines_by_label_set() {
        let recorder = EmfRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("chat_frames_posted_total").increment(2);
            metrics::counter!("chat_frames_posted_total").increment(3);
            metrics::counter!("chat_errors_total", "code" => "INTERNAL").increment(1);
            for i in 0..150 {
                metrics::histogram!("chat_fanout_lag_seconds", "path" => "direct")
                    .record(f64::from(i) / 1000.0);
            }
            metrics::histogram!("chat_fanout_lag_seconds", "path" => "feed").record(0.2);
        });
        let lines: Vec<Value> = recorder.drain(now_ms()).iter().map(|l| parse(l)).collect();
        let of = |name: &str, label: Option<(&str, &str)>| -> Vec<&Value> {
            lines
                .iter()
                .filter(|v| !v[name].is_null())
                .filter(|v| label.is_none_or(|(k, want)| v[k] == want))
                .collect()
        };
        assert_eq!(
            of("chat_frames_posted_total", None)[0]["chat_frames_posted_total"],
            5
        );
        let errors = of("chat_errors_total", Some(("code", "INTERNAL")));
        assert_eq!(
            errors[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "code"], ["code"]]),
            "by function, and over all"
        );
        let direct = of("chat_fanout_lag_seconds", Some(("path", "direct")));
        assert_eq!(direct.len(), 2, "150 values: 100 per line");
        let values: usize = direct
            .iter()
            .map(|v| v["chat_fanout_lag_seconds"].as_array().unwrap().len())
            .sum();
        assert_eq!(values, 150);
        assert_eq!(
            direct[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Seconds"
        );
        assert_eq!(
            of("chat_fanout_lag_seconds", Some(("path", "feed"))).len(),
            1
        );
        assert!(
            recorder.drain(now_ms()).is_empty(),
            "a drain forgets what it wrote"
        );
    }
}
