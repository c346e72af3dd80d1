//! AWS adapters of the chat core's ports, and the Lambda event glue.
//!
//! # Layout
//! - [`tables`]: the DynamoDB tables, defined once for code, tests and the template check.
//! - [`dynamodb`]: the `Store` port on DynamoDB.
//! - [`apigw`]: the `ConnectionGateway` port on the API Gateway Management API.
//! - [`sns`]: the `PushSender` port on SNS mobile push.
//! - [`secrets`]: the `SecretSource` port on Secrets Manager (our HS256 secret).
//! - [`lambda`]: configuration, adapters built once, and the handler of each event kind.

pub mod apigw;
pub mod dynamodb;
pub mod lambda;
pub mod metrics;
pub mod s3;
pub mod secrets;
pub mod sns;
pub mod tables;
