//! `when` tables: a condition per field, a bare value for equality or a table of operators.

use toml::Spanned;
use toml::de::DeValue;

use super::FileCx;
use super::values::did_you_mean;
use crate::diagnostics::spanned::{entries_in_order, number, type_name};
use crate::rules::condition::{Condition, OPERATORS, Op, Value};
use crate::rules::template::is_field_code;

impl<'s> FileCx<'_, 's> {
    pub(super) fn when(&mut self, v: &Spanned<DeValue<'s>>) -> Vec<Condition> {
        let DeValue::Table(table) = v.get_ref() else {
            let help = "write when = { TYPE_ID = \"SALE\", OPPORTUNITY = { gte = 100000 } }";
            self.mistyped(v, "when", "a table", help);
            return Vec::new();
        };
        let mut conditions = Vec::new();
        for (key, value) in entries_in_order(table) {
            let field = key.get_ref().as_ref();
            if !is_field_code(field) {
                self.error(
                    key.span(),
                    format!("\"{field}\" is not a field code"),
                    format!(
                        "write the field's code in upper case: {}",
                        field.to_ascii_uppercase()
                    ),
                );
                continue;
            }
            match value.get_ref() {
                DeValue::Table(ops) => {
                    if ops.is_empty() {
                        self.error(
                            value.span(),
                            format!("empty condition on {field}"),
                            format!("use one of: {}", OPERATORS.join(", ")),
                        );
                    }
                    for (op_key, operand) in entries_in_order(ops) {
                        let op_name = op_key.get_ref().as_ref();
                        match self.operator(op_name, operand) {
                            Ok(op) => conditions.push(Condition {
                                field: field.to_string(),
                                op,
                            }),
                            Err((message, help, at_key)) => {
                                let span = if at_key {
                                    op_key.span()
                                } else {
                                    operand.span()
                                };
                                self.error(span, message, help);
                            }
                        }
                    }
                }
                DeValue::Array(_) => {
                    self.error(
                        value.span(),
                        format!("a list of values for {field} is ambiguous"),
                        "write { in = [...] } for any of them",
                    );
                }
                _ => match scalar(value.get_ref()) {
                    Some(v) => conditions.push(Condition {
                        field: field.to_string(),
                        op: Op::Eq(v),
                    }),
                    None => self.error(
                        value.span(),
                        format!("cannot compare {field} with {}", type_name(value.get_ref())),
                        "use a string, a number or a boolean",
                    ),
                },
            }
        }
        conditions
    }

    /// One `when` operator; the error flag says whether to point at the key (unknown operator)
    /// or at the value (wrong operand).
    fn operator(
        &mut self,
        op: &str,
        operand: &Spanned<DeValue<'s>>,
    ) -> Result<Op, (String, String, bool)> {
        let value = operand.get_ref();
        // A wrong operand: what the operator takes, and how to write it.
        let takes = |what: &str, help: String| {
            let found = type_name(value);
            (format!("\"{op}\" takes {what}, found {found}"), help, false)
        };
        let list = || -> Result<Vec<Value>, (String, String, bool)> {
            value
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(|i| scalar(i.get_ref()))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| takes("an array of values", format!("write {op} = [\"A\", \"B\"]")))
        };
        let num = || -> Result<f64, (String, String, bool)> {
            number(value).ok_or_else(|| {
                let help = match value.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
                    Some(n) => format!("write {op} = {n}, without quotes"),
                    None => format!("write {op} = 100000"),
                };
                takes("a number", help)
            })
        };
        let one = || {
            scalar(value).ok_or_else(|| {
                takes(
                    "a string, a number or a boolean",
                    format!("write {op} = \"SALE\""),
                )
            })
        };
        Ok(match op {
            "eq" => Op::Eq(one()?),
            "ne" => Op::Ne(one()?),
            "gt" => Op::Gt(num()?),
            "gte" => Op::Gte(num()?),
            "lt" => Op::Lt(num()?),
            "lte" => Op::Lte(num()?),
            "in" => Op::In(list()?),
            "not_in" => Op::NotIn(list()?),
            "empty" => Op::Empty(
                value
                    .as_bool()
                    .ok_or_else(|| takes("true or false", "write empty = true".to_string()))?,
            ),
            other => {
                let help = did_you_mean(
                    other,
                    OPERATORS,
                    format!("use one of: {}", OPERATORS.join(", ")),
                );
                return Err((format!("unknown operator \"{other}\""), help, true));
            }
        })
    }
}

fn scalar(value: &DeValue<'_>) -> Option<Value> {
    match value {
        DeValue::String(s) => Some(Value::Text(s.to_string())),
        DeValue::Integer(_) | DeValue::Float(_) => number(value).map(Value::Number),
        DeValue::Boolean(b) => Some(Value::Bool(*b)),
        _ => None,
    }
}
