//! The sweeper: every minute (a schedule), closes connections silent for the idle
//! timeout and those whose token expired.

use std::sync::Arc;

use chat_aws::lambda::{Deps, LambdaConfig, SweepEvent, handle_sweep};
use chat_aws::metrics::flushed;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SweepEvent>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_sweep(&deps, event.payload)).await?) }
    }))
    .await
}
