//! Every Lambda function of `template.yaml`: runs the handler `CHAT_HANDLER` names.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    chat_functions::run().await
}
