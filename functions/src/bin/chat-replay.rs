//! The fan-out's replay, invoked by hand: its payload is one message of the fan-out's
//! dead-letter queue (the stream range Lambda gave up on); it reads those records back
//! from the stream (kept 24 h) and fans them out again. It fails when a record fails
//! again, so the message is kept. See docs/ARCHITECTURE.md, "When the fan-out fails".

use std::sync::Arc;

use chat_aws::lambda::{DeadLetter, LambdaConfig, ReplayDeps, handle_dead_letter};
use chat_aws::metrics::flushed;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Arc::new(ReplayDeps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<DeadLetter>| {
        let deps = deps.clone();
        async move {
            flushed(handle_dead_letter(
                &deps.deps.chat,
                &deps.streams,
                event.payload,
            ))
            .await
        }
    }))
    .await
}
