//! AWS adapters of the chat core's ports: DynamoDB ([`dynamodb::DynamoStore`]), and the
//! table definitions shared by code, tests and the template check ([`tables`]).

pub mod dynamodb;
pub mod tables;
