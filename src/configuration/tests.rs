//! The settings' unit tests: defaults, the environment layer, every bad value reported with its
//! key, the config file's relative paths, redaction, and `check`'s `file:line:col`.

use std::path::Path;
use std::time::Duration;

use super::load::read_env;
use super::*;

fn env(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        file: None,
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        overrides: Vec::new(),
        unreadable_env: Vec::new(),
    }
}

/// The sources of a run with `--config PATH` and no environment.
fn from_file(path: &Path) -> Sources {
    Sources {
        file: Some(path.to_path_buf()),
        ..Sources::default()
    }
}

/// `check`'s problems, one line each; the sources must have some.
fn check_problems(sources: &Sources) -> String {
    check(sources)
        .expect_err("bad")
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn defaults_match_the_documented_values() {
    let s = Settings::defaults();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.server.max_body, 64 * 1024);
    assert_eq!(s.portal.burst, 50);
    assert_eq!(s.portal.max_response, 32 * 1024 * 1024);
    assert_eq!(s.sync.poll_interval, Duration::from_secs(60));
    assert_eq!(s.sync.dedupe_window, Duration::from_secs(24 * 3600));
    assert_eq!(s.storage.cache, 16 * 1024 * 1024);
    assert_eq!(s.storage.cache, crate::store::DEFAULT_CACHE_BYTES);
}

#[test]
fn environment_sets_keys_and_lists() {
    let s = Settings::load(&env(&[
        (
            "B24ROBOT__PORTAL__WEBHOOK_URL",
            "https://x.bitrix24.ru/rest/1/abc",
        ),
        ("B24ROBOT__PORTAL__APPLICATION_TOKEN", "12345"),
        ("B24ROBOT__PORTAL__REQUESTS_PER_SECOND", "1.5"),
        ("B24ROBOT__CALENDAR__WORKDAYS", "mon,tue"),
        ("B24ROBOT__CALENDAR__HOLIDAYS", "2027-01-01, 2027-01-02"),
        ("B24ROBOT__SERVER__ADMIN_TOKEN", "0123"),
        ("OTHER", "ignored"),
    ]))
    .expect("valid");
    assert_eq!(
        s.portal.webhook_url.as_ref().map(Secret::expose),
        Some("https://x.bitrix24.ru/rest/1/abc/")
    );
    assert_eq!(s.portal.application_token.expose(), "12345");
    assert_eq!(s.portal.requests_per_second, 1.5);
    assert_eq!(
        s.server.admin_token.expose(),
        "0123",
        "an all-digit secret stays text"
    );
    assert!(
        s.calendar
            .is_working_day(chrono::NaiveDate::from_ymd_opt(2027, 1, 4).expect("date"))
    );
    assert!(
        !s.calendar
            .is_working_day(chrono::NaiveDate::from_ymd_opt(2027, 1, 6).expect("date"))
    );
    assert!(
        !s.calendar
            .is_working_day(chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"))
    );
}

#[test]
fn bad_values_are_all_reported_with_their_keys() {
    let err = Settings::load(&env(&[
        ("B24ROBOT__SYNC__POLL_INTERVAL", "soon"),
        ("B24ROBOT__CALENDAR__TIMEZONE", "Mars/Olympus"),
        ("B24ROBOT__PORTAL__WEBHOOK_URL", "not a url with secret"),
    ]))
    .expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("sync.poll_interval"), "{text}");
    assert!(text.contains("calendar.timezone"), "{text}");
    assert!(text.contains("portal.webhook_url"), "{text}");
    assert!(
        !text.contains("secret"),
        "the URL must not be echoed: {text}"
    );
}

#[test]
fn an_environment_that_is_not_utf8_is_ignored_except_for_our_variables() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
    let vars = vec![
        (bytes(b"UNRELATED_VAR"), bytes(b"\xff")),
        (bytes(b"\xffNAME"), bytes(b"x")),
        (bytes(b"B24ROBOT__SYNC__POLL_INTERVAL"), bytes(b"5s")),
        (
            bytes(b"B24ROBOT__PORTAL__WEBHOOK_URL"),
            bytes(b"https://x/\xff"),
        ),
    ];
    let (env, unreadable) = read_env(vars.into_iter());
    assert_eq!(env.len(), 1);
    assert_eq!(env["B24ROBOT__SYNC__POLL_INTERVAL"], "5s");
    assert_eq!(unreadable, ["B24ROBOT__PORTAL__WEBHOOK_URL"]);

    let sources = Sources {
        env,
        unreadable_env: unreadable,
        ..Sources::default()
    };
    let error = Settings::load(&sources).expect_err("a value that is not UTF-8 is refused");
    assert_eq!(
        error.to_string(),
        "environment variable B24ROBOT__PORTAL__WEBHOOK_URL: not valid UTF-8 (set it as UTF-8 text, or unset it)"
    );
    let problems = check(&sources).expect_err("check reports it too");
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .message
            .contains("B24ROBOT__PORTAL__WEBHOOK_URL")
    );
}

#[test]
fn unknown_key_is_an_error() {
    let err = Settings::load(&env(&[("B24ROBOT__PORTAL__WEBHOOK_ULR", "x")])).expect_err("bad");
    assert!(err.to_string().contains("webhook_ulr"), "{err}");
}

#[test]
fn missing_explicit_config_file_is_an_error() {
    assert!(matches!(
        Settings::load(&from_file(Path::new("/nonexistent/b24.toml"))),
        Err(ConfigError::FileNotFound(_))
    ));
}

#[test]
fn relative_dirs_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("conf.toml");
    std::fs::write(&path, "[rules]\ndir = \"my-rules\"\n").expect("write");
    let s = Settings::load(&from_file(&path)).expect("ok");
    assert_eq!(s.rules.dir, dir.path().join("my-rules"));
    assert_eq!(s.storage.dir, dir.path().join("data"));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let s = Settings::load(&env(&[
        (
            "B24ROBOT__PORTAL__WEBHOOK_URL",
            "https://x.bitrix24.ru/rest/1/topsecret/",
        ),
        ("B24ROBOT__PORTAL__APPLICATION_TOKEN", "tokensecret"),
    ]))
    .expect("valid");
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("topsecret") && !debug.contains("tokensecret"),
        "{debug}"
    );
}

#[test]
fn the_example_config_documents_every_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b24-robot.toml");
    let example = include_str!("../../b24-robot.example.toml");
    std::fs::write(&path, example).expect("write");
    let s = Settings::load(&from_file(&path)).expect("the example loads");
    let d = Settings::defaults();
    assert_eq!(format!("{:?}", s.server), format!("{:?}", d.server));
    assert_eq!(format!("{:?}", s.sync), format!("{:?}", d.sync));
    assert_eq!(format!("{:?}", s.worker), format!("{:?}", d.worker));
    assert_eq!(s.portal.burst, d.portal.burst);
    assert_eq!(s.portal.max_response, d.portal.max_response);
    assert_eq!(s.rules.max_tunnel_depth, d.rules.max_tunnel_depth);
    assert_eq!(s.portal.language, d.portal.language);
    assert_eq!(s.storage.cache, d.storage.cache);
}

#[test]
fn the_portal_language_is_russian_unless_set_and_a_bad_one_lists_both() {
    use crate::rules::Language;
    assert_eq!(Settings::defaults().portal.language, Language::Ru);
    let s = Settings::load(&env(&[("B24ROBOT__PORTAL__LANGUAGE", "en")])).expect("valid");
    assert_eq!(s.portal.language, Language::En);
    let error = Settings::load(&env(&[("B24ROBOT__PORTAL__LANGUAGE", "de")]))
        .expect_err("not a language")
        .to_string();
    assert!(
        error.contains(
            "portal.language: \"de\" is not a language of the service's texts (use \"ru\" or \"en\")"
        ),
        "{error}"
    );
}

#[test]
fn a_max_response_too_small_for_a_batch_answer_is_refused() {
    let error = Settings::load(&env(&[("B24ROBOT__PORTAL__MAX_RESPONSE", "1KiB")]))
        .expect_err("too small")
        .to_string();
    assert!(
        error.contains("portal.max_response: \"1KiB\" is too small"),
        "{error}"
    );
    let s = Settings::load(&env(&[("B24ROBOT__PORTAL__MAX_RESPONSE", "1MiB")])).expect("ok");
    assert_eq!(s.portal.max_response, 1024 * 1024);
}

#[test]
fn the_tunnel_depth_defaults_to_3_and_must_be_at_least_1() {
    assert_eq!(Settings::defaults().rules.max_tunnel_depth, 3);
    assert_eq!(Settings::defaults().worker.max_tunnel_depth, 3);
    let s = Settings::load(&env(&[("B24ROBOT__RULES__MAX_TUNNEL_DEPTH", "5")])).expect("valid");
    assert_eq!(
        (s.rules.max_tunnel_depth, s.worker.max_tunnel_depth),
        (5, 5)
    );
    let problems =
        check(&env(&[("B24ROBOT__RULES__MAX_TUNNEL_DEPTH", "0")])).expect_err("0 is refused");
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("rules.max_tunnel_depth")),
        "{problems:?}"
    );
}

#[test]
fn check_points_at_unknown_keys_and_bad_values_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("conf.toml");
    std::fs::write(&path, "[portal]\nwebhok_url = \"x\"\n").expect("write");
    let text = check_problems(&from_file(&path));
    assert!(
        text.ends_with(
            "conf.toml:2:1: unknown key \"portal.webhok_url\" (did you mean \"webhook_url\"?)"
        ),
        "{text}"
    );

    std::fs::write(&path, "[sync]\npoll_interval = \"soon\"\n").expect("write");
    let text = check_problems(&from_file(&path));
    assert!(
        text.contains("conf.toml:2:17: sync.poll_interval: bad duration \"soon\": \"soon\" is not a number (write a number and a unit: \"500ms\""),
        "{text}"
    );
}

#[test]
fn durations_and_sizes_parse() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("0s").is_err());
    assert_eq!(parse_size("64KiB"), Ok(65536));
    assert!(parse_size("lots").is_err());
}
