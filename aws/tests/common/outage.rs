//! A DynamoDB outage for chosen requests, to fail one step of an operation on the real
//! adapters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

/// Makes DynamoDB unreachable for some requests: a request whose body holds every
/// needle of the rule is sent to a closed port, so the SDK sees a refused connection
/// (and retries it as it would any). A rule with a trigger only starts to match once a
/// request holding the trigger has been sent.
#[derive(Debug, Clone, Default)]
pub struct Outage {
    rule: Arc<Mutex<Option<Rule>>>,
    refused: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
struct Rule {
    needles: Vec<String>,
    after: Option<String>,
}

impl Outage {
    pub fn start(&self, needles: &[&str]) {
        self.set(needles, None);
    }

    pub fn start_after(&self, trigger: &str, needles: &[&str]) {
        self.set(needles, Some(trigger.to_owned()));
    }

    fn set(&self, needles: &[&str], after: Option<String>) {
        *self.rule.lock().unwrap() = Some(Rule {
            needles: needles.iter().map(|n| (*n).to_owned()).collect(),
            after,
        });
    }

    pub fn end(&self) {
        *self.rule.lock().unwrap() = None;
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Intercept for Outage {
    fn name(&self) -> &'static str {
        "Outage"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context
            .request()
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let mut rule = self.rule.lock().unwrap();
        let Some(rule) = rule.as_mut() else {
            return Ok(());
        };
        if let Some(trigger) = &rule.after {
            if body.contains(trigger.as_str()) {
                rule.after = None;
            }
            return Ok(());
        }
        if rule.needles.iter().all(|n| body.contains(n.as_str())) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            context
                .request_mut()
                .set_uri("http://127.0.0.1:1/")
                .expect("a valid uri");
        }
        Ok(())
    }
}
