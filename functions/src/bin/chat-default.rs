//! The WebSocket `$default` route.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chat_functions::run_websocket_route().await
}
