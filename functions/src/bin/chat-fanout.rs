//! The fan-out: the messages table's DynamoDB stream, in order per shard, with partial
//! batch failures reported.

use std::sync::Arc;

use chat_aws::lambda::{Deps, LambdaConfig, StreamEvent, handle_stream};
use chat_aws::metrics::flushed;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<StreamEvent>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_stream(&deps.chat, event.payload)).await) }
    }))
    .await
}
