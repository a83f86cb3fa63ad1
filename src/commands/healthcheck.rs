//! `b24-robot healthcheck`: exit 0 when the running service is ready (the Docker image's health
//! check). It asks `/readyz`, not `/healthz`: a service that answers but cannot record events
//! (its store cannot write) is unhealthy too, so an orchestrator restarts it.

use std::path::PathBuf;

use super::{CommandError, CommandResult, load_settings};

pub async fn run(config: Option<PathBuf>) -> CommandResult {
    let settings = load_settings(config)?;
    let mut addr = settings.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|error| CommandError::Failed(error.to_string()))?;
    match client.get(format!("http://{addr}/readyz")).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            Err(CommandError::Unhealthy(
                match body.get("store").and_then(serde_json::Value::as_str) {
                    Some(store) => format!("/readyz answered {status}: store {store}"),
                    None => format!("/readyz answered {status}"),
                },
            ))
        }
        Err(error) => Err(CommandError::Unhealthy(error.without_url().to_string())),
    }
}
