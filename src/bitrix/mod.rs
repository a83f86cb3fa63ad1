//! TEMPORARY STUB on main: replaced by the bitrix branch.
#![allow(dead_code, unused_variables)]
use std::time::{Duration, SystemTime};
use serde_json::Value;
pub struct ClientSettings {
    pub webhook_url: url::Url,
    pub requests_per_second: f64,
    pub burst: u32,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}
#[derive(Clone, Debug)]
pub struct Client;
#[derive(Clone, Copy, Debug)]
pub enum Retry { Safe, Unsafe }
#[derive(Debug, Clone)]
pub struct Response { pub result: Value, pub total: Option<u64>, pub next: Option<u64> }
#[derive(Debug, Clone)]
pub struct BatchCall { pub method: String, pub params: Value }
#[derive(Debug, Clone)]
pub struct ApiError { pub http_status: u16, pub code: String, pub description: String }
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("api")] Api { method: String, error: ApiError },
    #[error("transport")] Transport { method: String, message: String, sent: bool },
    #[error("malformed")] Malformed { method: String, message: String },
    #[error("parked")] MethodParked { method: String, until: SystemTime },
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ErrorKind { RateLimited, OperationLimit { reset_at: Option<f64> }, Transient, NotFound, Auth, Permission, Invalid, Blocked }
impl CallError {
    pub fn kind(&self) -> ErrorKind { ErrorKind::Transient }
    pub fn is_retryable(&self) -> bool { true }
    pub fn outcome_unknown(&self) -> bool { true }
}
#[derive(Debug, thiserror::Error)]
#[error("client")]
pub struct ClientError;
impl Client {
    pub fn new(settings: ClientSettings) -> Result<Client, ClientError> { Ok(Client) }
    pub fn portal_origin(&self) -> String { String::new() }
    pub async fn call(&self, method: &str, params: Value, retry: Retry) -> Result<Response, CallError> { todo!() }
    pub async fn batch(&self, calls: Vec<BatchCall>, retry: Retry) -> Vec<Result<Response, CallError>> { todo!() }
    pub async fn list_all(&self, method: &str, params: Value, items_key: Option<&str>) -> Result<Vec<Value>, CallError> { todo!() }
}
