//! `batch`: up to 50 sub-calls in one request, `$result[...]` substitution between them,
//! `halt`, and per-key `result`/`result_error`/`result_total`/`result_next`/`result_time`.

use serde_json::{Map, Value, json};

use super::{BATCH_LIMIT, CallCtx, METHODS, Reply, call, method_not_found};
use crate::sandbox::php::parse_query;
use crate::sandbox::store::{ApiError, PortalState};
use crate::sandbox::values::{param, scalar_string};

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(v) => matches!(scalar_string(v).as_deref(), Some("1" | "true" | "Y" | "y")),
        None => false,
    }
}

/// Replaces `$result[key][field]...` with the value an earlier sub-call returned.
fn substitute(cmd: &str, results: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = cmd;
    while let Some(at) = rest.find("$result[") {
        out.push_str(&rest[..at]);
        let mut tail = &rest[at + "$result".len()..];
        let mut path = Vec::new();
        while let Some(stripped) = tail.strip_prefix('[') {
            let Some(close) = stripped.find(']') else {
                break;
            };
            path.push(&stripped[..close]);
            tail = &stripped[close + 1..];
        }
        let mut node = path.first().and_then(|k| results.get(*k));
        for key in path.iter().skip(1) {
            node = node.and_then(|n| match n {
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                Value::Object(map) => map.get(*key),
                _ => None,
            });
        }
        out.push_str(&node.and_then(scalar_string).unwrap_or_default());
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Bitrix24 (PHP) prints an empty map as `[]`.
fn php_map(map: Map<String, Value>) -> Value {
    if map.is_empty() {
        json!([])
    } else {
        Value::Object(map)
    }
}

pub(super) fn batch(
    st: &mut PortalState,
    params: &Value,
    ctx: &CallCtx,
) -> Result<Reply, ApiError> {
    let halt = truthy(param(params, "halt"));
    let commands: Vec<(String, String)> = match param(params, "cmd") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), scalar_string(v).unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    };
    if commands.len() > BATCH_LIMIT {
        return Err(ApiError::new(
            400,
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "Max batch length exceeded",
        ));
    }
    let mut result = Map::new();
    let mut errors = Map::new();
    let mut totals = Map::new();
    let mut nexts = Map::new();
    let mut times = Map::new();
    let mut sub_methods = Vec::new();
    for (key, command) in commands {
        let command = substitute(&command, &result);
        let (method, query) = command.split_once('?').unwrap_or((&command, ""));
        let method = method.trim().to_ascii_lowercase();
        let method = method.strip_suffix(".json").unwrap_or(&method).to_string();
        sub_methods.push(method.clone());
        let outcome = if method == "batch" {
            Err(ApiError::new(
                405,
                "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "Method is not allowed for batch usage",
            ))
        } else if !METHODS.contains(&method.as_str()) {
            Err(method_not_found())
        } else if ctx.is_blocked(&method) {
            Err(CallCtx::operation_time_limit())
        } else {
            call(st, &method, &parse_query(query), ctx)
        };
        times.insert(key.clone(), ctx.time(&method));
        match outcome {
            Ok(reply) => {
                if let Some(t) = reply.total {
                    totals.insert(key.clone(), json!(t));
                }
                if let Some(n) = reply.next {
                    nexts.insert(key.clone(), json!(n));
                }
                result.insert(key, reply.result);
            }
            Err(e) => {
                errors.insert(key, e.body());
                if halt {
                    break;
                }
            }
        }
    }
    Ok(Reply {
        result: json!({
            "result": php_map(result),
            "result_error": php_map(errors),
            "result_total": php_map(totals),
            "result_next": php_map(nexts),
            "result_time": php_map(times),
        }),
        sub_methods,
        ..Reply::default()
    })
}
