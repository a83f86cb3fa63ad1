//! The answer envelopes of the REST API, parsed leniently.
//!
//! A success is `{"result": ..., "total"?, "next"?, "time"?}` and an error
//! `{"error": ..., "error_description": ...}`. Bitrix24 is loose about both: `error` may be a
//! string, an empty string or a number; every field of `time` may be missing; a `batch` answers
//! `[]` instead of `{}` for an empty map; `total`/`next` may come as numbers or numeric strings.
//! So we read `serde_json::Value`s by hand here and hand typed values to the rest of the client.
//!
//! This is where the portal's texts enter: an error's code and description are cut here
//! ([`crate::text::cut`]), so a description of megabytes never reaches a log line or a record.

use serde_json::Value;

use super::error::ApiError;
use crate::text::{ERROR_TEXT_MAX, cut};

/// Bytes kept of an error code: Bitrix24's are short identifiers (`QUERY_LIMIT_EXCEEDED`).
const ERROR_CODE_MAX: usize = 256;

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The `result` field as sent (may be `false` or `null`: that is still a result).
    pub result: Value,
    /// `total` of a list method.
    pub total: Option<u64>,
    /// `next` of a list method: pass it back as `start` for the next page.
    pub next: Option<u64>,
    /// The `time` object (or the sub-call's `result_time` in a batch).
    pub time: Option<CallTime>,
}

/// The `time` object of an answer. Every field is optional: its composition "may vary".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallTime {
    pub start: Option<f64>,
    pub finish: Option<f64>,
    pub duration: Option<f64>,
    pub processing: Option<f64>,
    /// Accumulated execution time of this method in the current window, seconds.
    pub operating: Option<f64>,
    /// Unix time when the oldest one-minute basket of `operating` drops out.
    pub operating_reset_at: Option<f64>,
    pub date_start: Option<String>,
    pub date_finish: Option<String>,
}

impl CallTime {
    /// Reads a `time` object; anything but an object gives `None`.
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let number = |key: &str| map.get(key).and_then(as_f64);
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            start: number("start"),
            finish: number("finish"),
            duration: number("duration"),
            processing: number("processing"),
            operating: number("operating"),
            operating_reset_at: number("operating_reset_at"),
            date_start: text("date_start"),
            date_finish: text("date_finish"),
        })
    }
}

/// What one answer (or one batch sub-call) turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    Success(Response),
    Error(ApiError),
    Malformed(String),
}

/// Parses a whole HTTP answer, whatever its status: error envelopes come with 400..503, and a
/// proxy may put HTML in front of the portal.
pub(crate) fn parse_http(status: u16, body: &[u8]) -> Parsed {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        if (200..300).contains(&status) {
            return Parsed::Malformed(format!("HTTP {status} with a body that is not JSON"));
        }
        return Parsed::Error(ApiError::new(
            status,
            "",
            format!("HTTP {status} with a non-JSON body"),
        ));
    };
    let Some(map) = value.as_object() else {
        if (200..300).contains(&status) {
            return Parsed::Malformed("the answer is not a JSON object".into());
        }
        return Parsed::Error(ApiError::new(
            status,
            "",
            format!("HTTP {status} without an envelope"),
        ));
    };
    let has_result = map.contains_key("result");
    if map.contains_key("error") && (!has_result || status >= 400) {
        return Parsed::Error(error_of(status, &value));
    }
    if !has_result {
        if status >= 400 {
            return Parsed::Error(ApiError::new(
                status,
                "",
                format!("HTTP {status} without an error envelope"),
            ));
        }
        return Parsed::Malformed("the answer has neither result nor error".into());
    }
    Parsed::Success(Response {
        result: map.get("result").cloned().unwrap_or(Value::Null),
        total: map.get("total").and_then(as_u64),
        next: map.get("next").and_then(as_u64),
        time: map.get("time").and_then(CallTime::from_value),
    })
}

/// The error envelope in `value`: `error` and `error_description` as text whatever their JSON
/// type, cut to [`ERROR_CODE_MAX`] and [`ERROR_TEXT_MAX`] bytes.
pub(crate) fn error_of(status: u16, value: &Value) -> ApiError {
    let text = |key: &str, max: usize| match value.get(key) {
        Some(Value::String(text)) => cut(text, max).into_owned(),
        Some(Value::Null) | None => String::new(),
        Some(other) => cut(&other.to_string(), max).into_owned(),
    };
    ApiError::new(
        status,
        text("error", ERROR_CODE_MAX),
        text("error_description", ERROR_TEXT_MAX),
    )
}

/// Splits the `result` of a `batch` into one outcome per command key, in `keys` order, each
/// with the sub-call's `result_time` if any.
pub(crate) fn parse_batch(
    batch_status: u16,
    result: &Value,
    keys: &[String],
) -> Result<Vec<(Parsed, Option<CallTime>)>, String> {
    let Some(map) = result.as_object() else {
        return Err("batch result is not an object".into());
    };
    let section = |name: &str| -> Result<Option<&serde_json::Map<String, Value>>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(inner)) => Ok(Some(inner)),
            // PHP encodes an empty associative array as `[]`.
            Some(Value::Array(items)) if items.is_empty() => Ok(None),
            Some(_) => Err(format!("batch {name} is neither an object nor []")),
        }
    };
    let results = section("result")?;
    let errors = section("result_error")?;
    let totals = section("result_total")?;
    let nexts = section("result_next")?;
    let times = section("result_time")?;
    let get = |part: Option<&serde_json::Map<String, Value>>, key: &str| {
        part.and_then(|inner| inner.get(key)).cloned()
    };
    Ok(keys
        .iter()
        .map(|key| {
            let time = get(times, key).as_ref().and_then(CallTime::from_value);
            let parsed = if let Some(error) = get(errors, key) {
                Parsed::Error(error_of(batch_status, &error))
            } else if let Some(value) = get(results, key) {
                Parsed::Success(Response {
                    result: value,
                    total: get(totals, key).as_ref().and_then(as_u64),
                    next: get(nexts, key).as_ref().and_then(as_u64),
                    time: time.clone(),
                })
            } else {
                Parsed::Malformed(format!("batch has neither a result nor an error for {key}"))
            };
            (parsed, time)
        })
        .collect())
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(status: u16, value: Value) -> Parsed {
        parse_http(status, value.to_string().as_bytes())
    }

    #[test]
    fn a_success_with_time_total_and_next_is_read() {
        let Parsed::Success(response) = parse(
            200,
            json!({"result": [{"ID": "1"}], "total": 120, "next": 50,
                   "time": {"start": 1.5, "operating": 3.3, "operating_reset_at": 1778747792, "date_start": "x"}}),
        ) else {
            panic!("not a success");
        };
        assert_eq!(response.result, json!([{"ID": "1"}]));
        assert_eq!((response.total, response.next), (Some(120), Some(50)));
        let time = response.time.expect("time");
        assert_eq!(time.operating, Some(3.3));
        assert_eq!(time.operating_reset_at, Some(1_778_747_792.0));
        assert_eq!(time.finish, None);
        assert_eq!(time.date_start.as_deref(), Some("x"));
    }

    #[test]
    fn a_success_without_time_and_a_false_result_are_fine() {
        assert_eq!(
            parse(200, json!({"result": false})),
            Parsed::Success(Response {
                result: json!(false),
                total: None,
                next: None,
                time: None
            })
        );
    }

    #[test]
    fn errors_with_string_empty_and_number_codes_are_read() {
        let error = |status, value| match parse(status, value) {
            Parsed::Error(error) => error,
            other => panic!("not an error: {other:?}"),
        };
        let e = error(
            503,
            json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
        );
        assert_eq!(
            (e.http_status, e.code.as_str()),
            (503, "QUERY_LIMIT_EXCEEDED")
        );
        let e = error(400, json!({"error": "", "error_description": "Not found"}));
        assert_eq!((e.code.as_str(), e.description.as_str()), ("", "Not found"));
        let e = error(
            400,
            json!({"error": 0, "error_description": "SHIPMENT_DOCUMENT entity is not supported"}),
        );
        assert_eq!(e.code, "0");
        let e = error(401, json!({"error": "NO_AUTH_FOUND"}));
        assert_eq!(e.description, "");
    }

    #[test]
    fn an_error_description_of_megabytes_is_cut_to_two_kib_and_says_so() {
        let huge = "Ошибка ".repeat(400_000);
        let Parsed::Error(error) = parse(
            400,
            json!({"error": "ERROR_CORE", "error_description": huge}),
        ) else {
            panic!("not an error");
        };
        assert_eq!(error.code, "ERROR_CORE");
        assert!(
            error.description.len() <= 2048 + 40,
            "{}",
            error.description.len()
        );
        assert!(error.description.starts_with("Ошибка Ошибка"));
        assert!(
            error
                .description
                .ends_with(&format!("… [cut from {} bytes]", huge.len())),
            "{}",
            &error.description[2000..]
        );
        let Parsed::Error(error) = parse(
            500,
            json!({"error": "x".repeat(10_000), "error_description": {"nested": "y".repeat(10_000)}}),
        ) else {
            panic!("not an error");
        };
        assert!(error.code.len() < 300 && error.code.contains("[cut from 10000 bytes]"));
        assert!(error.description.len() < 2100 && error.description.contains("[cut from"));
    }

    #[test]
    fn bodies_that_are_not_json_depend_on_the_status() {
        assert!(matches!(parse_http(200, b"<html>"), Parsed::Malformed(_)));
        assert!(matches!(parse_http(502, b"<html>"), Parsed::Error(ref e) if e.http_status == 502));
        assert!(matches!(
            parse(200, json!({"foo": 1})),
            Parsed::Malformed(_)
        ));
        assert!(matches!(parse(200, json!([1])), Parsed::Malformed(_)));
    }

    #[test]
    fn a_batch_result_is_split_per_key_with_empty_maps_as_arrays() {
        let keys: Vec<String> = ["c0", "c1", "c2", "c3"]
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        let result = json!({
            "result": {"c0": {"ID": "5"}, "c2": false},
            "result_error": {"c1": {"error": "", "error_description": "Not found"}},
            "result_total": [],
            "result_next": [],
            "result_time": {"c0": {"operating": 1.0, "operating_reset_at": 100.0}}
        });
        let parsed = parse_batch(200, &result, &keys).expect("batch");
        assert!(
            matches!(&parsed[0].0, Parsed::Success(r) if r.result == json!({"ID": "5"}) && r.time.is_some())
        );
        assert!(matches!(&parsed[1].0, Parsed::Error(e) if e.description == "Not found"));
        assert!(matches!(&parsed[2].0, Parsed::Success(r) if r.result == json!(false)));
        assert!(matches!(&parsed[3].0, Parsed::Malformed(_)));
        let all_empty = json!({"result": [], "result_error": [], "result_total": [], "result_next": [], "result_time": []});
        assert!(matches!(
            &parse_batch(200, &all_empty, &keys).expect("batch")[0].0,
            Parsed::Malformed(_)
        ));
        assert!(parse_batch(200, &json!([]), &keys).is_err());
    }
}
