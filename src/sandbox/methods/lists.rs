//! What the list methods share: filters with operator prefixes, `order`, `select`, and pages
//! of 50 with `total`/`next` (endless ones too, for the hostile portal).

use std::borrow::Borrow;
use std::cmp::Ordering;

use chrono::FixedOffset;
use serde_json::{Map, Value};

use super::{PAGE, Reply};
use crate::sandbox::values::{
    compare, like, object_param, param, scalar_string, start_param, string_list,
};

/// Splits a filter key into its operator prefix and field name (`">=ID"` → `(">=", "ID")`).
pub(super) fn split_op(key: &str) -> (&str, String) {
    for op in [
        ">=", "<=", "!@", "!=", "=%", "%=", ">", "<", "@", "=", "!", "%",
    ] {
        if let Some(field) = key.strip_prefix(op) {
            return (op, field.to_ascii_uppercase());
        }
    }
    ("", key.to_ascii_uppercase())
}

/// The stored value(s) of a field: several for a multiple field, `""` for null.
fn field_values(item: &Map<String, Value>, field: &str) -> Vec<String> {
    match item.get(field) {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(Value::Null) | None => vec![String::new()],
        Some(v) => vec![scalar_string(v).unwrap_or_default()],
    }
}

pub(super) fn filter_values(value: &Value) -> Vec<String> {
    match value {
        Value::Array(_) | Value::Object(_) => string_list(value),
        Value::Null => vec![String::new()],
        Value::Bool(b) => vec![if *b { "Y" } else { "N" }.to_string()],
        other => vec![scalar_string(other).unwrap_or_default()],
    }
}

/// Does `item` pass every condition of `filter`? Keys whose field the item lacks are
/// ignored, like Bitrix24 ignores filter keys it does not know.
pub(super) fn matches(
    item: &Map<String, Value>,
    filter: &Map<String, Value>,
    offset: FixedOffset,
) -> bool {
    filter.iter().all(|(key, wanted)| {
        let (op, field) = split_op(key);
        if !item.contains_key(&field) {
            return true;
        }
        let have = field_values(item, &field);
        let wanted = filter_values(wanted);
        let eq = |h: &String, w: &String| {
            (h.is_empty() && w.is_empty())
                || (!h.is_empty() && compare(h, w, offset) == Ordering::Equal)
        };
        let any = |f: &dyn Fn(&String, &String) -> bool| {
            have.iter().any(|h| wanted.iter().any(|w| f(h, w)))
        };
        match op {
            "" | "=" | "@" => any(&eq),
            "!" | "!=" | "!@" => !any(&eq),
            ">" => any(&|h, w| !h.is_empty() && compare(h, w, offset) == Ordering::Greater),
            ">=" => any(&|h, w| !h.is_empty() && compare(h, w, offset) != Ordering::Less),
            "<" => any(&|h, w| !h.is_empty() && compare(h, w, offset) == Ordering::Less),
            "<=" => any(&|h, w| !h.is_empty() && compare(h, w, offset) != Ordering::Greater),
            "%" => any(&|h, w| like(h, &format!("%{w}%"))),
            _ => any(&|h, w| like(h, w)),
        }
    })
}

/// Sorts by an `order` object (`{"ID":"DESC"}`), falling back to `default`.
pub(super) fn sort_items<T: Borrow<Map<String, Value>>>(
    items: &mut [T],
    order: Option<Map<String, Value>>,
    default: (&str, bool),
    offset: FixedOffset,
) {
    let mut keys: Vec<(String, bool)> = order
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| {
            let desc = scalar_string(v).is_some_and(|d| d.eq_ignore_ascii_case("desc"));
            (k.to_ascii_uppercase(), desc)
        })
        .collect();
    if keys.is_empty() {
        keys.push((default.0.to_string(), default.1));
    }
    items.sort_by(|a, b| {
        for (field, desc) in &keys {
            let x = field_values(a.borrow(), field).join(",");
            let y = field_values(b.borrow(), field).join(",");
            let ord = compare(&x, &y, offset);
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// Whether an `order` is by id ascending (none is: the lists' default), the order the
/// simulator keeps deals and stage history in, so that such a list needs no sorting.
pub(super) fn by_id_ascending(order: Option<&Map<String, Value>>) -> bool {
    order.is_none_or(|order| {
        order.iter().all(|(key, direction)| {
            key.eq_ignore_ascii_case("ID")
                && !scalar_string(direction).is_some_and(|d| d.eq_ignore_ascii_case("desc"))
        })
    })
}

/// A filter's `>ID`/`>=ID` keys as the lowest id they let through, and the filter without
/// them: the caller starts its list there, in id order, instead of testing every item. A key
/// whose value is not one id stays in the filter.
pub(super) fn id_floor(filter: &Map<String, Value>) -> (u64, Map<String, Value>) {
    let mut floor = 0;
    let mut rest = Map::new();
    for (key, wanted) in filter {
        let id = match filter_values(wanted).as_slice() {
            [one] => one.trim().parse::<u64>().ok(),
            _ => None,
        };
        let bound = match (split_op(key), id) {
            ((">", field), Some(id)) if field == "ID" => Some(id.saturating_add(1)),
            ((">=", field), Some(id)) if field == "ID" => Some(id),
            _ => None,
        };
        match bound {
            Some(bound) => floor = floor.max(bound),
            None => {
                rest.insert(key.clone(), wanted.clone());
            }
        }
    }
    (floor, rest)
}

/// One page of a list and the `total`/`next` that go with it.
pub(super) struct Page<T> {
    items: Vec<T>,
    total: Option<usize>,
    next: Option<usize>,
}

impl<T> Page<T> {
    /// Cuts one page of 50 out of `items` at `start`; `total` unless `start=-1`. An `endless`
    /// list answers its first page whatever `start` says, and a `next` past it.
    pub fn cut(items: Vec<T>, params: &Value, endless: bool) -> Self {
        let (start, count) = start_param(params);
        let total = items.len();
        let (skip, next) = if endless {
            (0, Some(start + PAGE))
        } else {
            (start, (start + PAGE < total).then_some(start + PAGE))
        };
        Self {
            items: items.into_iter().skip(skip).take(PAGE).collect(),
            total: count.then_some(total),
            next,
        }
    }

    /// The answer, its `result` made of the page's items by `result`.
    pub fn reply(self, result: impl FnOnce(Vec<T>) -> Value) -> Reply {
        Reply::list(result(self.items), self.total, self.next)
    }
}

/// The call's `filter` (empty without one); for an `endless` list without its `>ID` bound,
/// which a portal that pages forever ignores.
pub(super) fn list_filter(params: &Value, endless: bool) -> Map<String, Value> {
    let mut filter = object_param(params, "filter").unwrap_or_default();
    if endless {
        filter.retain(|k, _| !matches!(split_op(k), (">", f) if f == "ID"));
    }
    filter
}

pub(super) fn select_list(params: &Value) -> Vec<String> {
    param(params, "select")
        .map(string_list)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
}
