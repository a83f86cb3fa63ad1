//! The sandbox's control API over the simulated portal: deals created, moved and edited by
//! HTTP, what the rules made, and `explain` of a deal from the sandbox's own store.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::commands::output::outln;
use crate::ops::admin::{deal_report, format_deal_report};
use crate::sandbox::SimPortal;
use crate::store::Store;

/// The shared state of the control API: the simulated portal, and the service's store for
/// `explain`.
#[derive(Clone)]
pub struct Control {
    sim: SimPortal,
    store: Store,
}

impl axum::extract::FromRef<Control> for SimPortal {
    fn from_ref(control: &Control) -> SimPortal {
        control.sim.clone()
    }
}

/// The curl lines the banner prints: each works as printed (a JSON body says so).
pub fn examples(base: &str) -> Vec<String> {
    let post = |path: &str, body: &str| {
        format!("curl -s -X POST {base}{path} -H 'Content-Type: application/json' -d '{body}'")
    };
    vec![
        post(
            "/deals",
            r#"{"TITLE":"Acme","ASSIGNED_BY_ID":"3","STAGE_ID":"NEW"}"#,
        ),
        post("/deals/1/move", r#"{"stage":"PREPARATION"}"#),
        post("/deals/1/update", r#"{"UF_CRM_INN":"7701234567"}"#),
        format!("curl -s {base}/deals/1/explain    (what the rules decided, and why)"),
        format!("curl -s {base}/deals/1    curl -s {base}/deals    curl -s {base}/tasks"),
    ]
}

/// The control API over the simulated portal.
pub fn router(sim: SimPortal, store: Store) -> Router {
    Router::new()
        .route("/", get(help))
        .route("/deals", get(list_deals).post(create_deal))
        .route("/deals/{id}", get(get_deal))
        .route("/deals/{id}/move", post(move_deal))
        .route("/deals/{id}/update", post(update_deal))
        .route("/deals/{id}/explain", get(explain_deal))
        .route("/tasks", get(list_tasks))
        .route(
            "/comments",
            get(|State(sim): State<SimPortal>| async move { Json(sim.comments()) }),
        )
        .route(
            "/notifications",
            get(|State(sim): State<SimPortal>| async move { Json(sim.notifications()) }),
        )
        .with_state(Control { sim, store })
}

async fn help() -> &'static str {
    "b24-robot sandbox control API\n\
     POST /deals               {fields}            create a deal (TITLE, ASSIGNED_BY_ID, STAGE_ID, CATEGORY_ID, ...)\n\
     GET  /deals                                   every deal\n\
     GET  /deals/{id}                              one deal\n\
     POST /deals/{id}/move     {\"stage\": \"...\"}    move it to a stage\n\
     POST /deals/{id}/update   {fields}            edit fields\n\
     GET  /deals/{id}/explain                      what the rules decided about it, and why\n\
     GET  /tasks | /comments | /notifications      what the rules made\n"
}

fn refused(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// A JSON body, whatever content type the client sent (curl's `-d` alone says form data).
fn json_body(body: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
}

fn body_fields(body: &Bytes) -> Result<Map<String, Value>, String> {
    match json_body(body)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(NOT_FIELDS.into()),
    }
}

/// `explain` of a deal from the sandbox's store, as the command prints it.
async fn explain_deal(State(control): State<Control>, UrlPath(id): UrlPath<u64>) -> Response {
    let store = control.store.clone();
    let report = tokio::task::spawn_blocking(move || deal_report(&store, id)).await;
    match report {
        Ok(Ok(report)) => format_deal_report(&report).into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
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

async fn create_deal(State(sim): State<SimPortal>, body: Bytes) -> Response {
    let fields = match body_fields(&body) {
        Ok(fields) => fields,
        Err(why) => return refused(why),
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
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(why) => return refused(why),
    };
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
    body: Bytes,
) -> Response {
    let fields = match body_fields(&body) {
        Ok(fields) => fields,
        Err(why) => return refused(why),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SimConfig;

    #[test]
    fn every_printed_post_says_its_body_is_json() {
        let lines = examples("http://127.0.0.1:8090");
        let posts: Vec<&String> = lines.iter().filter(|l| l.contains("-X POST")).collect();
        assert_eq!(posts.len(), 3, "{lines:?}");
        for line in posts {
            assert!(
                line.contains(" -H 'Content-Type: application/json' -d '{"),
                "{line}"
            );
        }
    }

    /// `curl -d` without `-H` sends `application/x-www-form-urlencoded`: the body is JSON all
    /// the same, and is taken.
    #[tokio::test]
    async fn a_json_body_sent_as_form_data_is_taken_and_a_broken_one_refused() {
        let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
        crate::sandbox::seed::seed_portal(&sim);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(axum::serve(listener, router(sim.clone(), store)).into_future());
        let client = reqwest::Client::new();
        let post = |path: &str, body: &'static str| {
            client
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        let created = post(
            "/deals",
            r#"{"TITLE":"Acme","ASSIGNED_BY_ID":"3","STAGE_ID":"NEW"}"#,
        )
        .await
        .expect("answers");
        assert_eq!(created.status().as_u16(), 201);
        let broken = post("/deals", "TITLE=Acme").await.expect("answers");
        assert_eq!(broken.status().as_u16(), 422);
        let text = broken.text().await.expect("body");
        assert!(text.contains("the body is not JSON"), "{text}");
        let explained = client
            .get(format!("{base}/deals/1/explain"))
            .send()
            .await
            .expect("answers");
        assert_eq!(explained.status().as_u16(), 200);
    }
}
