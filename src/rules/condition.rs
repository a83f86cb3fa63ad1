//! `when`: extra conditions on the deal's fields, all of which must hold.
//!
//! Bitrix24 sends every scalar as a string, so a rule value that is a number compares
//! numerically (`"100000.00"` equals `100000`), and a list field compares by the label its
//! option shows (its raw option id is accepted too, for rules written before a catalog existed).
//! A field with several values satisfies a positive test when any value does, and a negative
//! test (`ne`, `not_in`) when no value matches.

use std::fmt;

use crate::rules::deal::{Deal, FieldCatalog};

/// A value written in a rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "\"{s}\""),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Eq(Value),
    Ne(Value),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Empty(bool),
}

/// The operators a `when` table takes, for errors and suggestions.
pub(crate) const OPERATORS: &[&str] = &[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "empty",
];

/// One test on one field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) field: String,
    pub(crate) op: Op,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |values: &[Value]| {
            values
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.op {
            Op::Eq(v) => write!(f, "{} = {v}", self.field),
            Op::Ne(v) => write!(f, "{} ne {v}", self.field),
            Op::Gt(n) => write!(f, "{} gt {n}", self.field),
            Op::Gte(n) => write!(f, "{} gte {n}", self.field),
            Op::Lt(n) => write!(f, "{} lt {n}", self.field),
            Op::Lte(n) => write!(f, "{} lte {n}", self.field),
            Op::In(vs) => write!(f, "{} in [{}]", self.field, list(vs)),
            Op::NotIn(vs) => write!(f, "{} not_in [{}]", self.field, list(vs)),
            Op::Empty(b) => write!(f, "{} empty = {b}", self.field),
        }
    }
}

impl Condition {
    /// Whether the deal satisfies the condition.
    pub(crate) fn holds(&self, deal: &Deal, catalog: &FieldCatalog) -> bool {
        let values = scalar_values(deal, &self.field);
        let any = |test: &dyn Fn(&str) -> bool| values.iter().any(|raw| test(raw));
        match &self.op {
            Op::Empty(expected) => is_missing(deal, catalog, &self.field) == *expected,
            Op::Eq(v) => any(&|raw| matches(catalog, &self.field, raw, v)),
            Op::Ne(v) => !any(&|raw| matches(catalog, &self.field, raw, v)),
            Op::In(vs) => any(&|raw| vs.iter().any(|v| matches(catalog, &self.field, raw, v))),
            Op::NotIn(vs) => !any(&|raw| vs.iter().any(|v| matches(catalog, &self.field, raw, v))),
            Op::Gt(n) => any(&|raw| number(raw).is_some_and(|x| x > *n)),
            Op::Gte(n) => any(&|raw| number(raw).is_some_and(|x| x >= *n)),
            Op::Lt(n) => any(&|raw| number(raw).is_some_and(|x| x < *n)),
            Op::Lte(n) => any(&|raw| number(raw).is_some_and(|x| x <= *n)),
        }
    }
}

fn matches(catalog: &FieldCatalog, field: &str, raw: &str, value: &Value) -> bool {
    match value {
        Value::Number(n) => number(raw).is_some_and(|x| x == *n),
        Value::Bool(b) => match raw {
            "Y" | "1" | "true" => *b,
            "N" | "0" | "false" => !*b,
            _ => false,
        },
        Value::Text(text) => {
            raw == text
                || catalog
                    .option_label(field, raw)
                    .is_some_and(|label| label == text)
        }
    }
}

/// A Bitrix24 number: `"1000.00"`, or the amount of a money value `"1000|RUB"`.
pub(crate) fn number(raw: &str) -> Option<f64> {
    let amount = raw.split_once('|').map_or(raw, |(amount, _)| amount);
    amount.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The field's non-null values as strings (a multiple field gives several).
pub(crate) fn scalar_values(deal: &Deal, field: &str) -> Vec<String> {
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(if *b { "Y".into() } else { "N".into() }),
        other => Some(other.to_string()),
    };
    match deal.get(field) {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
    }
}

/// "Missing" as `rules.md` defines it: absent, null, an empty string, an empty list, or a zero
/// amount (`OPPORTUNITY` of 0, a money value such as `"0|RUB"`).
pub(crate) fn is_missing(deal: &Deal, catalog: &FieldCatalog, field: &str) -> bool {
    let values: Vec<String> = scalar_values(deal, field)
        .into_iter()
        .filter(|v| !v.trim().is_empty())
        .collect();
    if values.is_empty() {
        return true;
    }
    let is_amount = field == "OPPORTUNITY" || catalog.field_type(field) == Some("money");
    values.iter().all(|v| {
        let money_shaped = v.contains('|');
        (is_amount || money_shaped) && number(v) == Some(0.0)
    })
}
