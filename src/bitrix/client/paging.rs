//! [`Client::list_all`]: every item of a small list method, page by page along `next`.

use serde_json::{Map, Value};

use super::{Client, Retry};
use crate::bitrix::error::{ApiError, CallError};

/// Pages `list_all` reads at most (50 items each): it is for catalogs, not for deals.
const MAX_PAGES: usize = 2_000;

impl Client {
    /// Every item of a list method, following `next`; for small lists (catalogs). `items_key`
    /// names the array inside `result` (`Some("items")` for `crm.item.list`), `None` when
    /// `result` is the array.
    pub async fn list_all(
        &self,
        method: &str,
        params: Value,
        items_key: Option<&str>,
    ) -> Result<Vec<Value>, CallError> {
        let mut params = match params {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => {
                return Err(CallError::Api {
                    method: method.to_owned(),
                    error: ApiError::new(
                        0,
                        "INVALID_PARAMS",
                        "list parameters must be a JSON object",
                    ),
                });
            }
        };
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .call(method, Value::Object(params.clone()), Retry::Safe)
                .await?;
            let page = match items_key {
                Some(key) => response.result.get(key).cloned(),
                None => Some(response.result),
            };
            match page {
                Some(Value::Array(page)) => items.extend(page),
                Some(Value::Object(page)) => items.extend(page.into_iter().map(|(_, item)| item)),
                _ => {
                    return Err(CallError::Malformed {
                        method: method.to_owned(),
                        message: "a list page without an array of items".into(),
                    });
                }
            }
            let current = params.get("start").and_then(Value::as_u64);
            match response.next {
                Some(next) if Some(next) != current => {
                    params.insert("start".into(), Value::from(next));
                }
                _ => return Ok(items),
            }
        }
        Err(CallError::Malformed {
            method: method.to_owned(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}
