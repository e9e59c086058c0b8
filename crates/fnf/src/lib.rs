#![forbid(unsafe_code)]
//! The Alibaba Cloud Serverless Workflow (fnf, API 2019-03-15) client.

mod client;
pub mod credentials;
mod error;
pub mod http;
pub mod redact;
pub mod sign;
mod types;

pub use client::{API_VERSION, Account, Client, Unsigned, decode, decode_with, long_poll, nonce};
pub use credentials::{Credentials, CredentialsError, Provider, Secret};
pub use error::{ErrorKind, FnfError};
pub use http::{Endpoint, http_client, http_client_trusting};
pub use types::{Execution, ExecutionList, ExecutionStatus, ListRequest, StopRequest};

use futures::future::BoxFuture;

/// What the operator needs from the service; `Client` is the real one.
pub trait FnfApi: Send + Sync {
    fn stop<'a>(
        &'a self,
        account: &'a Account,
        req: &'a StopRequest,
    ) -> BoxFuture<'a, Result<Execution, FnfError>>;
    fn describe<'a>(
        &'a self,
        account: &'a Account,
        flow: &'a str,
        execution: &'a str,
        wait_seconds: u32,
    ) -> BoxFuture<'a, Result<Execution, FnfError>>;
    /// One page of ListExecutions.
    fn list<'a>(
        &'a self,
        account: &'a Account,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<ExecutionList, FnfError>>;
}

impl FnfApi for Client {
    fn stop<'a>(
        &'a self,
        account: &'a Account,
        req: &'a StopRequest,
    ) -> BoxFuture<'a, Result<Execution, FnfError>> {
        Box::pin(self.stop_execution(account, req))
    }

    fn describe<'a>(
        &'a self,
        account: &'a Account,
        flow: &'a str,
        execution: &'a str,
        wait_seconds: u32,
    ) -> BoxFuture<'a, Result<Execution, FnfError>> {
        Box::pin(self.describe_execution(account, flow, execution, Some(wait_seconds)))
    }

    fn list<'a>(
        &'a self,
        account: &'a Account,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<ExecutionList, FnfError>> {
        Box::pin(self.list_executions(account, req))
    }
}
