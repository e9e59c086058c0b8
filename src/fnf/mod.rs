//! The Alibaba Cloud Serverless Workflow (fnf, API 2019-03-15) client.

mod client;
pub mod credentials;
mod error;
pub mod http;
pub mod sign;
mod types;

pub use client::{API_VERSION, Account, Client, Unsigned, decode, long_poll, nonce};
pub use credentials::{Credentials, CredentialsError, Provider, Secret};
pub use error::FnfError;
pub use http::{Endpoint, http_client};
pub use types::{Execution, ExecutionList, ExecutionStatus, ListRequest, StopRequest};
