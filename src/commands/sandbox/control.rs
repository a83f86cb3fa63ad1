//! The sandbox's control API over the simulated portal: deals created, moved and edited by
//! HTTP, what the rules made, and `explain` of a deal from the sandbox's own store.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::commands::output::outln;
use crate::sandbox::SimPortal;

/// The control API over the simulated portal.
pub fn router(sim: SimPortal) -> Router {
    Router::new()
        .route("/", get(help))
        .route("/deals", get(list_deals).post(create_deal))
        .route("/deals/{id}", get(get_deal))
        .route("/deals/{id}/move", post(move_deal))
        .route("/deals/{id}/update", post(update_deal))
        .route("/tasks", get(list_tasks))
        .route(
            "/comments",
            get(|State(sim): State<SimPortal>| async move { Json(sim.comments()) }),
        )
        .route(
            "/notifications",
            get(|State(sim): State<SimPortal>| async move { Json(sim.notifications()) }),
        )
        .with_state(sim)
}

async fn help() -> &'static str {
    "b24-robot sandbox control API\n\
     POST /deals               {fields}            create a deal (TITLE, ASSIGNED_BY_ID, STAGE_ID, CATEGORY_ID, ...)\n\
     GET  /deals                                   every deal\n\
     GET  /deals/{id}                              one deal\n\
     POST /deals/{id}/move     {\"stage\": \"...\"}    move it to a stage\n\
     POST /deals/{id}/update   {fields}            edit fields\n\
     GET  /tasks | /comments | /notifications      what the rules made\n"
}

fn refused(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": message })),
    )
        .into_response()
}

fn body_fields(body: &Value) -> Option<Map<String, Value>> {
    body.as_object().cloned()
}

const NOT_FIELDS: &str = "the body must be a JSON object of deal fields";

async fn list_deals(State(sim): State<SimPortal>) -> Json<Vec<Value>> {
    Json(sim.deals())
}

async fn list_tasks(State(sim): State<SimPortal>) -> Json<Vec<Value>> {
    Json(sim.tasks())
}

async fn get_deal(State(sim): State<SimPortal>, UrlPath(id): UrlPath<u64>) -> Response {
    match sim.deal(id) {
        Some(deal) => Json(deal).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such deal"})),
        )
            .into_response(),
    }
}

async fn create_deal(State(sim): State<SimPortal>, Json(body): Json<Value>) -> Response {
    let Some(fields) = body_fields(&body) else {
        return refused(NOT_FIELDS.into());
    };
    match sim.try_create_deal(Value::Object(fields)).await {
        Ok(id) => {
            outln!("* HTTP: created deal {id}");
            (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn move_deal(
    State(sim): State<SimPortal>,
    UrlPath(id): UrlPath<u64>,
    Json(body): Json<Value>,
) -> Response {
    let Some(stage) = body
        .get("stage")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return refused("the body must be {\"stage\": \"<STAGE_ID>\"}".into());
    };
    if sim.deal(id).is_none() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such deal"})),
        )
            .into_response();
    }
    outln!("* HTTP: move deal {id} to {stage}");
    match sim.try_move_deal(id, &stage).await {
        Ok(_) => Json(sim.deal(id).unwrap_or(Value::Null)).into_response(),
        Err(e) => {
            outln!("  refused: {e}");
            refused(e)
        }
    }
}

async fn update_deal(
    State(sim): State<SimPortal>,
    UrlPath(id): UrlPath<u64>,
    Json(body): Json<Value>,
) -> Response {
    let Some(fields) = body_fields(&body) else {
        return refused(NOT_FIELDS.into());
    };
    if sim.deal(id).is_none() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such deal"})),
        )
            .into_response();
    }
    outln!(
        "* HTTP: update deal {id}: {}",
        Value::Object(fields.clone())
    );
    match sim.try_update_deal(id, Value::Object(fields)).await {
        Ok(_) => Json(sim.deal(id).unwrap_or(Value::Null)).into_response(),
        Err(e) => refused(e),
    }
}
