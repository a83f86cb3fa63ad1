//! PHP-style query strings, both ways.
//!
//! Bitrix24 is a PHP application: a form body or query string such as
//! `fields[TITLE]=x&fields[UF_CRM_TASK][0]=D_5` reaches it as nested arrays, and the portal
//! builds its own outgoing bodies with `http_build_query`. The simulator parses requests the
//! same way (so our client cannot get away with an encoding the real portal would misread) and
//! posts events byte-for-byte in PHP's shape.

use serde_json::{Map, Value};
use url::form_urlencoded;

/// Parses `a[b][0]=x&a[b][1]=y&c=z` into nested JSON: `{"a":{"b":["x","y"]},"c":"z"}`.
///
/// Every leaf is a string, as PHP sees it. A level whose keys are exactly `0..n` in order
/// becomes an array (PHP makes no difference; JSON clients expect arrays there), any other
/// level stays an object, numeric-looking keys included. Brackets may arrive raw or
/// percent-encoded; `+` is a space. A later duplicate key wins, as in PHP.
pub fn parse_query(input: &str) -> Value {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(input.as_bytes()) {
        let Some(path) = split_key(&key) else {
            continue;
        };
        insert(&mut root, &path, value.into_owned());
    }
    arrays_from_sequences(Value::Object(root))
}

/// `a[b][]` → `["a", "b", ""]`; `None` for a key PHP would drop (empty base).
fn split_key(key: &str) -> Option<Vec<String>> {
    let (base, mut rest) = match key.find('[') {
        // PHP keeps a key with an unclosed bracket as a whole.
        Some(at) if key[at..].contains(']') => (&key[..at], &key[at..]),
        _ => (key, ""),
    };
    if base.is_empty() {
        return None;
    }
    let mut path = vec![base.to_string()];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            break;
        };
        path.push(stripped[..close].to_string());
        rest = &stripped[close + 1..];
    }
    Some(path)
}

fn insert(node: &mut Map<String, Value>, path: &[String], value: String) {
    let (first, rest) = match path.split_first() {
        Some(split) => split,
        None => return,
    };
    let key = if first.is_empty() {
        // `a[]=x`: PHP appends at the next integer index.
        next_index(node).to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        node.insert(key, Value::String(value));
        return;
    }
    let child = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        // `a=1&a[b]=2`: PHP replaces the scalar by an array.
        *child = Value::Object(Map::new());
    }
    if let Value::Object(map) = child {
        insert(map, rest, value);
    }
}

fn next_index(node: &Map<String, Value>) -> u64 {
    node.keys()
        .filter_map(|k| k.parse::<u64>().ok())
        .max()
        .map_or(0, |m| m + 1)
}

fn arrays_from_sequences(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_sequence = !map.is_empty()
                && map
                    .keys()
                    .enumerate()
                    .all(|(i, k)| k.parse::<usize>().ok() == Some(i) && k == &i.to_string());
            if is_sequence {
                Value::Array(
                    map.into_iter()
                        .map(|(_, v)| arrays_from_sequences(v))
                        .collect(),
                )
            } else {
                Value::Object(
                    map.into_iter()
                        .map(|(k, v)| (k, arrays_from_sequences(v)))
                        .collect(),
                )
            }
        }
        other => other,
    }
}

/// Builds a body like PHP's `http_build_query`: nested keys as `a[b][0]`, brackets and values
/// percent-encoded, spaces as `+`, `null` left out, booleans as `1`/`0`.
pub fn build_query(value: &Value) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Value::Object(map) = value {
        for (k, v) in map {
            flatten(&mut out, k.clone(), v);
        }
    }
    out.finish()
}

fn flatten(out: &mut form_urlencoded::Serializer<'_, String>, key: String, value: &Value) {
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            out.append_pair(&key, if *b { "1" } else { "0" });
        }
        Value::Number(n) => {
            out.append_pair(&key, &n.to_string());
        }
        Value::String(s) => {
            out.append_pair(&key, s);
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(out, format!("{key}[{i}]"), v);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(out, format!("{key}[{k}]"), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_become_objects_and_sequences_arrays() {
        let parsed = parse_query(
            "fields[TITLE]=x&fields[UF_CRM_TASK][0]=D_5&fields[UF_CRM_TASK][1]=D_6&id=3",
        );
        assert_eq!(
            parsed,
            json!({"fields": {"TITLE": "x", "UF_CRM_TASK": ["D_5", "D_6"]}, "id": "3"})
        );
    }

    #[test]
    fn percent_encoded_brackets_and_appends_work() {
        let parsed = parse_query("select%5B%5D=ID&select%5B%5D=TITLE&filter%5B%3EID%5D=5&a=b+c");
        assert_eq!(
            parsed,
            json!({"select": ["ID", "TITLE"], "filter": {">ID": "5"}, "a": "b c"})
        );
    }

    #[test]
    fn numeric_keys_that_are_not_a_sequence_stay_object_keys() {
        let parsed = parse_query("a[5]=x&a[7]=y&b[1]=z");
        assert_eq!(parsed, json!({"a": {"5": "x", "7": "y"}, "b": {"1": "z"}}));
    }

    #[test]
    fn build_query_encodes_brackets_like_php() {
        let body = build_query(
            &json!({"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "5"}}, "x": null}),
        );
        assert_eq!(body, "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=5");
    }
}
