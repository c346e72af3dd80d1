//! The Lambda functions: one binary, `chat-lambda`, for every function of
//! `template.yaml`. Each function sets `CHAT_HANDLER` to the kind of event it gets, and
//! the binary runs that handler of `chat_aws::lambda`; it builds the AWS clients once per
//! process. No logic lives here. One binary is one link in the deploying profile, which
//! the end-to-end run on the emulator then tests as it ships.
//!
//! | `CHAT_HANDLER` | functions | events |
//! |---|---|---|
//! | `websocket` | Connect, Disconnect, Default, Send, Read, Delivered, Typing, Heartbeat | WebSocket routes (`$connect`, `$disconnect`, each action) |
//! | `http` | Http | the HTTP API (`/v1/...`, `/health`) |
//! | `stream` | Fanout | the messages table's DynamoDB stream |
//! | `replay` | Replay | invoked by hand with a message of the fan-out's dead-letter queue |
//! | `sweep` | Sweep | a schedule, every minute: closes silent connections |

use std::sync::Arc;

use chat_aws::lambda::{
    DeadLetter, Deps, LambdaConfig, ReplayDeps, StreamEvent, SweepEvent, WsEvent,
    handle_dead_letter, handle_http, handle_stream, handle_sweep, handle_ws,
};
use chat_aws::metrics::flushed;
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// The handlers, by the name `CHAT_HANDLER` gives them.
pub const HANDLERS: [&str; 5] = ["websocket", "http", "stream", "replay", "sweep"];

/// Runs the handler `CHAT_HANDLER` names until the runtime stops the process.
pub async fn run() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let handler = std::env::var("CHAT_HANDLER").unwrap_or_default();
    match handler.as_str() {
        "websocket" => websocket().await,
        "http" => http().await,
        "stream" => stream().await,
        "replay" => replay().await,
        "sweep" => sweep().await,
        other => Err(format!("CHAT_HANDLER is {other:?}, not one of {HANDLERS:?}").into()),
    }
}

/// Every WebSocket route: one handler dispatches on the event's route (a `send` frame
/// can only reach the `send` function).
async fn websocket() -> Result<(), Error> {
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<WsEvent>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_ws(&deps, event.payload)).await) }
    }))
    .await
}

async fn http() -> Result<(), Error> {
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| {
            let deps = deps.clone();
            async move { Ok::<_, Error>(flushed(handle_http(&deps, request)).await) }
        },
    ))
    .await
}

/// The fan-out: in order per shard, with partial batch failures reported.
async fn stream() -> Result<(), Error> {
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<StreamEvent>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_stream(&deps.chat, event.payload)).await) }
    }))
    .await
}

/// The fan-out's replay, invoked by hand: its payload is one message of the fan-out's
/// dead-letter queue (the stream range Lambda gave up on); it reads those records back
/// from the stream (kept 24 h) and fans them out again. It fails when a record fails
/// again, so the message is kept. See docs/ARCHITECTURE.md, "When the fan-out fails".
async fn replay() -> Result<(), Error> {
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

/// The sweeper: closes connections silent for the idle timeout, and those whose token
/// expired.
async fn sweep() -> Result<(), Error> {
    let deps = Arc::new(Deps::new(LambdaConfig::from_env()?).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SweepEvent>| {
        let deps = deps.clone();
        async move { Ok::<_, Error>(flushed(handle_sweep(&deps, event.payload)).await?) }
    }))
    .await
}
