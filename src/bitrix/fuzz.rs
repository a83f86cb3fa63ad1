//! Fuzzing the REST envelope as property tests: any status with any bytes, any JSON value, and
//! envelope-shaped objects whose fields hold anything parse to a success, an error or
//! "malformed", never a panic; so do `batch` results, and the park a 429 derives from them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::client::park_until;
use super::envelope::{CallTime, Parsed, parse_batch, parse_http};

/// Cases per property: `PROPTEST_CASES` for a longer run, else what CI affords.
fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// Any JSON value, nested a few levels, with the numbers that break conversions.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(1e300),
            Just(-1e300),
            Just(1.8e19),
            Just(-0.0),
            Just(4.9e-324)
        ]
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "[ +-]?[0-9]{0,30}(\\.[0-9]{0,4})?(e[+-]?[0-9]{1,3})?".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys of envelopes, batch sections and `time` objects, mostly the real ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "result", "error", "error_description", "total", "next", "time", "result_error",
            "result_total", "result_next", "result_time", "operating_reset_at", "operating",
            "start", "finish", "duration", "date_start", "c0", "c1", "c2",
        ]).prop_map(String::from),
        1 => ".{0,6}",
    ]
}

/// An object with envelope keys holding any values.
fn envelope() -> impl Strategy<Value = Value> {
    proptest::collection::vec((key(), json_value()), 0..8)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

fn check(parsed: &Parsed) {
    if let Parsed::Success(response) = parsed
        && let Some(time) = &response.time
    {
        let _ = park_until(SystemTime::now(), time.operating_reset_at);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(4000)))]

    #[test]
    fn any_status_and_bytes_never_panic(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(&parse_http(status, &body));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(2000)))]

    #[test]
    fn any_json_value_never_panics(status in prop_oneof![Just(200u16), Just(400), Just(429), Just(503), any::<u16>()], value in json_value()) {
        check(&parse_http(status, value.to_string().as_bytes()));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(1500)))]

    #[test]
    fn envelope_shaped_objects_never_panic(status in prop_oneof![Just(200u16), Just(400), Just(503)], value in envelope()) {
        let parsed = parse_http(status, value.to_string().as_bytes());
        // A 2xx answer with a `result` key is a success whatever the other keys hold.
        if (200..300).contains(&status) && value.get("result").is_some() && value.get("error").is_none() {
            prop_assert!(matches!(parsed, Parsed::Success(_)), "{parsed:?}");
        }
        check(&parsed);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(1000)))]

    #[test]
    fn batch_results_never_panic(
        result in prop_oneof![
            json_value(),
            proptest::collection::vec(
                (proptest::sample::select(vec!["result", "result_error", "result_total", "result_next", "result_time"]), envelope()),
                0..5,
            ).prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ],
        keys in proptest::collection::vec(key(), 0..5),
    ) {
        if let Ok(outcomes) = parse_batch(200, &result, &keys) {
            prop_assert_eq!(outcomes.len(), keys.len());
            for (parsed, time) in &outcomes {
                check(parsed);
                let _ = park_until(SystemTime::now(), time.as_ref().and_then(|t| t.operating_reset_at));
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(4000)))]

    #[test]
    fn a_park_is_between_ten_seconds_and_fifteen_minutes(reset in prop_oneof![any::<f64>(), 0.0..4e9f64, Just(1e20), Just(f64::MAX)]) {
        let now = SystemTime::now();
        let until = park_until(now, Some(reset));
        prop_assert!(until >= now + Duration::from_secs(10));
        prop_assert!(until <= now + Duration::from_secs(15 * 60));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(2000)))]

    #[test]
    fn time_objects_of_any_shape_read(value in json_value()) {
        let _ = CallTime::from_value(&value);
    }
}

/// Regression: a `time` object with a huge `operating_reset_at` (a 429 then parks the method)
/// panicked in `Duration::from_secs_f64`.
#[test]
fn a_huge_operating_reset_at_is_capped_not_a_panic() {
    let body = json!({"result": {}, "time": {"operating_reset_at": 1e20}}).to_string();
    let Parsed::Success(response) = parse_http(200, body.as_bytes()) else {
        panic!("a success");
    };
    let reset = response.time.and_then(|t| t.operating_reset_at);
    let now = SystemTime::now();
    assert_eq!(park_until(now, reset), now + Duration::from_secs(15 * 60));
    assert_eq!(
        park_until(now, Some(f64::MAX)),
        now + Duration::from_secs(15 * 60)
    );
    assert_eq!(
        park_until(UNIX_EPOCH, Some(30.0)),
        UNIX_EPOCH + Duration::from_secs(30)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(1000)))]

    /// The batch command encoder takes the worker's params, built from portal data.
    #[test]
    fn php_queries_of_any_params_never_panic(params in json_value()) {
        let _ = super::php_query(&params);
    }
}
