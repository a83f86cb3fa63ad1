//! Fuzzing the config loader as property tests: a config file of known sections and keys with
//! values of any TOML type, overrides with any text, and the duration and size parsers, never
//! panic: every input is loaded or refused with problems.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::raw::known_keys;
use super::*;

/// Cases per property: `PROPTEST_CASES` for a longer run, else what CI affords.
fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// TOML values of every type, written as TOML source.
fn toml_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        Just("inf".to_string()),
        Just("nan".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,16}".prop_map(|s| format!("{s:?}").replace("\\u{", "\\u").replace('}', "")),
        "[0-9]{1,30}(\\.[0-9]{1,3})? ?(ms|s|m|h|d|KiB|MiB|B|x)?".prop_map(|s| format!("{s:?}")),
        Just("\"99999999999999999999999d\"".to_string()),
        Just("\"1e400s\"".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"25:00-99:99\"".to_string()),
    ];
    scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec(inner, 0..2).prop_map(|items| {
                let pairs: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("k{i} = {v}"))
                    .collect();
                format!("{{ {} }}", pairs.join(", "))
            }),
        ]
    })
}

fn all_keys() -> Vec<(String, String)> {
    known_keys()
        .into_iter()
        .flat_map(|(section, keys)| keys.into_iter().map(move |k| (section.clone(), k)))
        .collect()
}

fn key() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        9 => proptest::sample::select(all_keys()),
        1 => ("[a-z]{1,8}", "[a-z_]{1,10}"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(1500)))]

    #[test]
    fn a_config_file_of_any_values_loads_or_is_refused(
        entries in proptest::collection::vec((key(), toml_value()), 0..8),
    ) {
        let mut by_section: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ((section, key), value) in &entries {
            by_section.entry(section.clone()).or_default().push(format!("{key} = {value}"));
        }
        let text: String = by_section
            .iter()
            .map(|(section, lines)| format!("[{section}]\n{}\n", lines.join("\n")))
            .collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b24-robot.toml");
        std::fs::write(&path, &text).expect("config file");
        let sources = Sources { file: Some(path), ..Sources::default() };
        let _ = Settings::load(&sources);
        if let Err(problems) = check(&sources) {
            prop_assert!(!problems.is_empty());
        }
    }

    #[test]
    fn overrides_and_environment_of_any_text_load_or_are_refused(
        entries in proptest::collection::vec((key(), ".{0,24}"), 0..6),
    ) {
        let overrides = entries
            .iter()
            .map(|((s, k), v)| (format!("{s}.{k}"), v.clone()))
            .collect();
        let _ = Settings::load(&Sources { overrides, ..Sources::default() });
        let env = entries
            .iter()
            .map(|((s, k), v)| (format!("B24ROBOT__{}__{}", s.to_uppercase(), k.to_uppercase()), v.clone()))
            .collect();
        let _ = Settings::load(&Sources { env, ..Sources::default() });
    }

    #[test]
    fn durations_and_sizes_of_any_text_parse_or_are_refused(
        text in prop_oneof![".{0,20}", "[0-9]{1,40}(\\.[0-9]{0,40})? ?(ms|s|m|h|d|KiB|MiB|B)?"],
    ) {
        let _ = parse_duration(&text);
        let _ = parse_size(&text);
    }
}

/// Regression: a duration too long for `Duration` panicked in `Duration::from_secs_f64`.
#[test]
fn a_duration_too_long_is_refused_not_a_panic() {
    assert!(parse_duration("99999999999999999999999d").is_err());
    assert!(parse_duration(&format!("{}s", "9".repeat(400))).is_err());
}
