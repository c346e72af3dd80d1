//! The Lambda functions. Each binary in `src/bin/` is one function of `template.yaml`:
//! it reads its configuration, builds the AWS clients once, and hands each event to a
//! handler of `chat_aws::lambda`. No logic lives here.
//!
//! | binary | route or trigger |
//! |---|---|
//! | `chat-connect` | WebSocket `$connect` |
//! | `chat-disconnect` | WebSocket `$disconnect` |
//! | `chat-send`, `chat-read`, `chat-delivered`, `chat-typing`, `chat-heartbeat` | the WebSocket action of the same name |
//! | `chat-default` | WebSocket `$default` (unknown actions, malformed frames) |
//! | `chat-http` | the HTTP API (`/v1/...`, `/health`) |
//! | `chat-fanout` | the messages table's DynamoDB stream |
//! | `chat-replay` | invoked by hand with a message of the fan-out's dead-letter queue |
//! | `chat-sweep` | a schedule, every minute: closes silent connections |

use std::sync::Arc;

use chat_aws::lambda::{Deps, LambdaConfig, WsEvent, handle_ws};
use chat_aws::metrics::flushed;
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// Runs a WebSocket route function: every route shares one handler, which dispatches on
/// the event's route (a `send` frame can only reach the `send` function).
pub async fn run_websocket_route() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<WsEvent>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_ws(&deps, event.payload)).await) }
    }))
    .await
}
