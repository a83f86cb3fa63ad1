//! `POST /admin/digests/{name}` (`{"dry_run": true|false}`): a `[[digest]]` built now in the
//! running service, sent or (dry run) only shown; what `b24-robot digest NAME` asks for.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::worker::control::digests;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Request {
    #[serde(default)]
    dry_run: bool,
}

/// One recipient's digest, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestText {
    pub recipient: u64,
    pub items: usize,
    pub text: String,
}

/// What a digest built now gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestReport {
    pub digest: String,
    pub dry_run: bool,
    pub recipients: Vec<DigestText>,
}

impl DigestReport {
    /// What [`digests::send`] composed, as the API answers it.
    pub fn of(digest: String, dry_run: bool, sent: Vec<digests::Composed>) -> DigestReport {
        DigestReport {
            digest,
            dry_run,
            recipients: sent
                .into_iter()
                .map(|c| DigestText {
                    recipient: c.recipient,
                    items: c.items,
                    text: c.text,
                })
                .collect(),
        }
    }
}

pub(super) async fn run(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Option<axum::Json<Request>>,
) -> Response {
    let Some(service) = &state.backfill else {
        return (StatusCode::NOT_FOUND, "no worker in this service\n").into_response();
    };
    let dry_run = body.is_some_and(|b| b.dry_run);
    let worker = &service.worker;
    let rules = worker.rules.current();
    let Some(digest) = rules.controls().digest_named(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no [[digest]] named \"{name}\" in the rules in force\n"),
        )
            .into_response();
    };
    match digests::send(worker, &rules, digest, None, dry_run).await {
        Ok(sent) => axum::Json(DigestReport::of(name, dry_run, sent)).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, format!("{error}\n")).into_response(),
    }
}
