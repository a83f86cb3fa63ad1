//! `b24-robot sandbox --rules DIR [--scenario FILE] [--listen ADDR]`: the real service against
//! the simulated portal (seeded like the demo's: two pipelines, the custom fields, users in two
//! departments) with the integrator's rules, to try a rule change end to end.
//!
//! With a scenario (a short TOML script) it plays it, printing each stage entry and effect as
//! the demo does, and exits. Without one it serves a small control API on `--listen`, where
//! deals are created, moved and edited by HTTP, and prints what the service does until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use toml::de::DeValue;

use super::demo::{Running, print_done, start};
use super::{CommandError, CommandResult};
use crate::commands::output::outln;
use crate::diagnostics::Diagnostic;
use crate::diagnostics::spanned::{Reader, entry, tables, type_name};
use crate::rules::RuleSet;
use crate::sandbox::SimPortal;

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Narration, printed as `* text`.
    Say(String),
    Create {
        deal: String,
        fields: Value,
    },
    Move {
        deal: String,
        to: String,
    },
    Update {
        deal: String,
        fields: Value,
    },
    /// Wait at least this long (for the sweep), printing what happens.
    Wait(Duration),
}

const STEP_KEYS: &[&str] = &["say", "create", "move", "update", "wait", "to", "fields"];
const ACTIONS: &[&str] = &["create", "move", "update", "wait"];

/// Parses a scenario file; `Err` holds every problem, each at its `file:line:col`.
pub fn parse_scenario(name: &str, text: &str) -> Result<Vec<Step>, Vec<Diagnostic>> {
    let mut r = Reader::new(name, text);
    let doc = r.parse();
    let doc = doc.get_ref();
    r.keys(doc, &["step"], "at the top level of a scenario");
    let mut steps = Vec::new();
    let mut created: Vec<String> = Vec::new();
    for (span, t) in tables(&mut r, doc, "step") {
        r.keys(t, STEP_KEYS, "in [[step]]");
        if let Some(say) = r.string(t, "say") {
            steps.push(Step::Say(say));
        }
        let actions: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|a| entry(t, a).is_some())
            .collect();
        if actions.len() > 1 {
            r.error(
                span.clone(),
                format!(
                    "a step does one thing, this one has {}",
                    actions.join(" and ")
                ),
                "split it into several [[step]] sections",
            );
            continue;
        }
        let fields = entry(t, "fields").map(|(_, v)| Value::Object(r.fields(v, "fields")));
        let deal_ref = |r: &mut Reader<'_>, key: &str| -> Option<String> {
            let name = r.string(t, key)?;
            if key != "create" && !created.contains(&name) {
                let (_, v) = entry(t, key)?;
                r.error(
                    v.span(),
                    format!("no deal \"{name}\" was created by an earlier step"),
                    "create it first: [[step]] create = \"name\" with fields = { ... }",
                );
            }
            Some(name)
        };
        match actions.first().copied() {
            Some("create") => {
                let Some(deal) = deal_ref(&mut r, "create") else {
                    continue;
                };
                if fields.is_none() {
                    r.error(
                        span.clone(),
                        format!("creating \"{deal}\" needs its fields"),
                        "add fields = { TITLE = \"Acme\", ASSIGNED_BY_ID = 3, STAGE_ID = \"NEW\" }",
                    );
                }
                created.push(deal.clone());
                steps.push(Step::Create {
                    deal,
                    fields: fields.unwrap_or_default(),
                });
            }
            Some("move") => {
                let deal = deal_ref(&mut r, "move");
                let to = r.string(t, "to");
                if entry(t, "to").is_none() {
                    r.error(
                        span.clone(),
                        "a move needs the stage: to = \"PREPARATION\"",
                        "add to = \"<STAGE_ID>\"",
                    );
                }
                if let (Some(deal), Some(to)) = (deal, to) {
                    steps.push(Step::Move { deal, to });
                }
            }
            Some("update") => {
                let deal = deal_ref(&mut r, "update");
                if fields.is_none() {
                    r.error(
                        span.clone(),
                        "an update needs fields = { ... }",
                        "add fields = { UF_CRM_INN = \"7701234567\" }",
                    );
                }
                if let (Some(deal), Some(fields)) = (deal, fields) {
                    steps.push(Step::Update { deal, fields });
                }
            }
            Some(_) => {
                let Some((_, v)) = entry(t, "wait") else {
                    continue;
                };
                match v.get_ref() {
                    DeValue::String(s) => match wait_duration(s) {
                        Some(d) => steps.push(Step::Wait(d)),
                        None => r.error(
                            v.span(),
                            format!("bad wait \"{s}\""),
                            "write wait = \"3s\" or \"500ms\"",
                        ),
                    },
                    other => r.error(
                        v.span(),
                        format!("\"wait\" must be a string, found {}", type_name(other)),
                        "write wait = \"3s\"",
                    ),
                }
            }
            None => {
                if entry(t, "say").is_none() {
                    r.error(
                        span.clone(),
                        "a step with nothing to do",
                        "use say, create, move, update or wait",
                    );
                }
            }
        }
    }
    if r.errors.is_empty() {
        Ok(steps)
    } else {
        Err(r.errors)
    }
}

fn wait_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = text.strip_suffix('s') {
        return s.trim().parse().ok().map(Duration::from_secs);
    }
    if let Some(m) = text.strip_suffix('m') {
        return m
            .trim()
            .parse::<u64>()
            .ok()
            .map(|m| Duration::from_secs(m * 60));
    }
    None
}

pub async fn run(
    config: Option<PathBuf>,
    rules_dir: Option<PathBuf>,
    scenario: Option<PathBuf>,
    listen: SocketAddr,
) -> CommandResult {
    let settings = super::load_settings_for_rules(config, rules_dir)?;
    let rules = super::load_rules(&settings).map_err(|_| {
        CommandError::Failed("the rules do not load: the sandbox did not start".into())
    })?;
    let steps = scenario.as_deref().map(read_scenario).transpose()?;
    match steps {
        Some(steps) => play(&rules, steps).await,
        None => serve(&rules, listen).await,
    }
    .map_err(CommandError::Failed)
}

/// The scenario file's steps; its problems printed (they are the command's output), exit 2.
fn read_scenario(path: &Path) -> Result<Vec<Step>, CommandError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::Usage(format!("{name}: cannot read the scenario: {e}")))?;
    parse_scenario(&name, &text).map_err(|diagnostics| {
        for d in diagnostics {
            eprintln!("error: {d}");
        }
        CommandError::Invalid
    })
}

async fn play(rules: &RuleSet, steps: Vec<Step>) -> Result<(), String> {
    let Running {
        sim,
        mut story,
        stop,
    } = start(rules, "sandbox").await?;
    let mut deals: Vec<(String, u64)> = Vec::new();
    let id_of = |deals: &[(String, u64)], name: &str| {
        deals
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .ok_or_else(|| format!("no deal \"{name}\""))
    };
    let mut outcome = Ok(());
    for step in steps {
        let result: Result<(), String> = async {
            match step {
                Step::Say(text) => story.say(&text),
                Step::Create { deal, fields } => {
                    let id = sim.try_create_deal(fields).await?;
                    story.say(&format!("create \"{deal}\": deal {id}"));
                    deals.push((deal, id));
                    story.settle().await;
                }
                Step::Move { deal, to } => {
                    let id = id_of(&deals, &deal)?;
                    story.say(&format!("move \"{deal}\" (deal {id}) to {to}"));
                    sim.try_move_deal(id, &to).await?;
                    story.settle().await;
                }
                Step::Update { deal, fields } => {
                    let id = id_of(&deals, &deal)?;
                    story.say(&format!("update \"{deal}\" (deal {id}): {fields}"));
                    sim.try_update_deal(id, fields).await?;
                    story.settle().await;
                }
                Step::Wait(d) => {
                    story.say(&format!("wait {}s", d.as_secs_f64()));
                    story.settle_for(d).await;
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            outcome = result;
            break;
        }
    }
    stop.stop().await?;
    print_done(&sim);
    outcome
}

async fn serve(rules: &RuleSet, listen: SocketAddr) -> Result<(), String> {
    let Running {
        sim,
        mut story,
        stop,
    } = start(rules, "sandbox").await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    outln!("control API on {base} (Ctrl-C stops):");
    outln!(
        "  curl -s -X POST {base}/deals -d '{{\"TITLE\":\"Acme\",\"ASSIGNED_BY_ID\":\"3\",\"STAGE_ID\":\"NEW\"}}'"
    );
    outln!("  curl -s -X POST {base}/deals/1/move -d '{{\"stage\":\"PREPARATION\"}}'");
    outln!("  curl -s -X POST {base}/deals/1/update -d '{{\"UF_CRM_INN\":\"7701234567\"}}'");
    outln!("  curl -s {base}/deals/1    curl -s {base}/deals    curl -s {base}/tasks");
    outln!();
    let printer = tokio::spawn(async move {
        while let Some(activity) = story.rx.recv().await {
            story.print(&activity);
        }
    });
    let app = router(sim);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(crate::startup::shutdown_signal())
        .await;
    printer.abort();
    stop.stop().await?;
    server.map_err(|e| e.to_string())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_reads_into_steps() {
        let steps = parse_scenario(
            "s.toml",
            r#"
[[step]]
say = "Vera creates a deal"
create = "acme"
fields = { TITLE = "Acme", ASSIGNED_BY_ID = 3, STAGE_ID = "NEW" }

[[step]]
move = "acme"
to = "PREPARATION"

[[step]]
wait = "2s"
"#,
        )
        .expect("valid");
        assert_eq!(steps.len(), 4);
        assert_eq!(
            steps[2],
            Step::Move {
                deal: "acme".into(),
                to: "PREPARATION".into()
            }
        );
        assert_eq!(steps[3], Step::Wait(Duration::from_secs(2)));
    }

    #[test]
    fn a_scenario_with_a_typo_or_an_unknown_deal_is_refused_with_positions() {
        let errors = parse_scenario("s.toml", "[[step]]\nmove = \"acme\"\ntoo = \"WON\"\n")
            .expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("s.toml:3:1: unknown key \"too\"")
                    && e.contains("did you mean \"to\"?")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("s.toml:2:8: no deal \"acme\"")),
            "{shown:?}"
        );
    }
}
