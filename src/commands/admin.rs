//! How the admin commands (`explain`, `jobs`, `store check`, `backfill`) reach the service's
//! state: through the running service's admin API when it runs (it holds the store's lock), or
//! on the store directly when it does not. Both paths build the same JSON (`crate::ops::admin`),
//! so the commands print the same either way.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::CommandError;
use crate::configuration::Settings;
use crate::store::{Store, StoreError};

/// Where the answer comes from.
pub(super) enum Source {
    Api(reqwest::Client, String),
    Store(Store),
}

#[derive(Debug, thiserror::Error)]
pub(super) enum AdminError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the admin API answered {status}: {body}")]
    Api { status: u16, body: String },
    #[error("the admin API: {0}")]
    Http(String),
    #[error(
        "the store is in use by the running service and its admin API is off: set server.admin_token (and restart it) to use this command while it runs"
    )]
    NoApi,
    /// The command cannot do what was asked, and says why (exit 1).
    #[error("{0}")]
    Refused(String),
}

/// Reaches the running service's admin API if one answers; else opens the store.
pub(super) async fn source(settings: &Settings) -> Result<Source, AdminError> {
    if !settings.server.admin_token.is_empty() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AdminError::Http(e.to_string()))?;
        let mut addr = settings.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base = format!("http://{addr}");
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Ok(Source::Api(client, base));
        }
    }
    match Store::open_with_cache(&settings.storage.dir, settings.storage.cache) {
        Ok(store) => Ok(Source::Store(store)),
        Err(StoreError::Locked { .. }) => Err(AdminError::NoApi),
        Err(other) => Err(other.into()),
    }
}

pub(super) async fn api<T: DeserializeOwned>(
    settings: &Settings,
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> Result<T, AdminError> {
    api_with(settings, client, method, url, None).await
}

pub(super) async fn api_with<T: DeserializeOwned>(
    settings: &Settings,
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<T, AdminError> {
    let mut request = client
        .request(method, url)
        .bearer_auth(settings.server.admin_token.expose());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| AdminError::Http(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| AdminError::Http(e.without_url().to_string()))?;
    if !(200..300).contains(&status) {
        return Err(AdminError::Api {
            status,
            body: body.trim().to_string(),
        });
    }
    serde_json::from_str(&body).map_err(|e| AdminError::Http(format!("not JSON: {e}")))
}

/// A report as the admin API serves it: pretty JSON.
pub(super) fn pretty<T: serde::Serialize>(report: &T) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

impl From<AdminError> for CommandError {
    fn from(error: AdminError) -> CommandError {
        CommandError::Failed(error.to_string())
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> CommandError {
        CommandError::Failed(error.to_string())
    }
}

/// A worker on the store opened here (no service runs), with `rules`: what the commands that
/// read the portal themselves (`backfill`, `digest`, `report`) work with.
pub(super) fn store_worker(
    settings: &Settings,
    store: Store,
    rules: &crate::rules::RuleSet,
) -> Result<std::sync::Arc<crate::worker::Worker>, AdminError> {
    let client = crate::startup::client(settings).map_err(|e| AdminError::Http(e.to_string()))?;
    Ok(std::sync::Arc::new(crate::worker::Worker::new(
        settings,
        store,
        client,
        crate::rules::RulesHandle::new(rules.clone()),
        None,
    )))
}
