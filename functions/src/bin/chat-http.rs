//! The HTTP API: every `/v1` route and `/health`.

use std::sync::Arc;

use chat_aws::lambda::{Deps, LambdaConfig, handle_http};
use chat_aws::metrics::flushed;
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_http::run(service_fn(move |request: Request| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_http(&deps, request)).await) }
    }))
    .await
}
