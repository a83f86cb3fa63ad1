//! The raw layer into [`Settings`]: every value parsed into its type or checked against its
//! bounds, every bad one recorded under its key (a [`BadValue`]), all reported at once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::RawSettings;
use super::sections::{
    ControlSettings, LogFormat, LogSettings, PortalSettings, RulesSettings, Secret, ServerSettings,
    StorageSettings, SyncSettings, UiSettings, WorkerSettings,
};
use super::values::{parse_calendar, parse_duration, parse_size, parse_webhook_url, positive};
use super::{BadValue, ConfigError, Settings};
use crate::rules::Language;

/// The smallest `portal.max_response` accepted.
const MIN_MAX_RESPONSE: usize = 64 * 1024;

/// Collects every bad value, each with its key, while turning the raw strings into types.
#[derive(Default)]
struct Checker {
    errors: Vec<BadValue>,
}

impl Checker {
    /// The parsed value, or `fallback` with the error recorded under `key`.
    fn parse<T>(&mut self, key: &str, parsed: Result<T, String>, fallback: T) -> T {
        parsed.unwrap_or_else(|e| {
            self.errors.push(BadValue::new(key, e));
            fallback
        })
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        self.parse(key, parse_duration(text), Duration::ZERO)
    }

    fn size(&mut self, key: &str, text: &str) -> usize {
        self.parse(key, parse_size(text), 0)
    }

    fn require(&mut self, key: &str, ok: bool, why: &str) {
        if !ok {
            self.errors.push(BadValue::new(key, why));
        }
    }

    /// A count that must be 1 or more.
    fn at_least_one<T: PartialOrd + From<u8>>(&mut self, key: &str, value: T) {
        self.require(key, value >= T::from(1), "must be at least 1");
    }

    /// A count that must be between 1 and `max`.
    fn up_to(&mut self, key: &str, value: usize, max: usize) {
        self.require(
            key,
            (1..=max).contains(&value),
            &format!("must be between 1 and {max}"),
        );
    }
}

pub(super) fn validate(raw: RawSettings, base_dir: &Path) -> Result<Settings, ConfigError> {
    let mut c = Checker::default();
    let listen = c.parse(
        "server.listen",
        raw.server
            .listen
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| {
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:8080\"",
                    raw.server.listen
                )
            }),
        None,
    );
    let max_body = c.size("server.max_body", &raw.server.max_body);
    let request_timeout = c.duration("server.request_timeout", &raw.server.request_timeout);
    c.at_least_one("server.max_connections", raw.server.max_connections);
    c.require(
        "server.max_connections_per_client",
        (1..=raw.server.max_connections.max(1)).contains(&raw.server.max_connections_per_client),
        "must be between 1 and server.max_connections",
    );

    let webhook_url = c.parse(
        "portal.webhook_url",
        parse_webhook_url(&raw.portal.webhook_url),
        None,
    );
    c.parse(
        "portal.requests_per_second",
        positive(
            raw.portal.requests_per_second,
            "a number of requests per second above 0",
        ),
        (),
    );
    c.at_least_one("portal.burst", raw.portal.burst);
    let portal_timeout = c.duration("portal.timeout", &raw.portal.timeout);
    c.at_least_one("portal.max_attempts", raw.portal.max_attempts);
    let portal_retry_base = c.duration("portal.retry_base", &raw.portal.retry_base);
    let portal_retry_max = c.duration("portal.retry_max", &raw.portal.retry_max);
    let max_response = c.parse(
        "portal.max_response",
        parse_size(&raw.portal.max_response).and_then(|size| {
            if size >= MIN_MAX_RESPONSE {
                Ok(size)
            } else {
                Err(format!(
                    "{:?} is too small: a batch answer for 25 deals needs room (at least 64KiB)",
                    raw.portal.max_response
                ))
            }
        }),
        0,
    );

    let language = c.parse(
        "portal.language",
        Language::parse(&raw.portal.language).ok_or_else(|| {
            format!(
                "{:?} is not a language of the service's texts (use \"{}\")",
                raw.portal.language,
                Language::NAMES.join("\" or \"")
            )
        }),
        Language::default(),
    );

    let decisions_retention = c.duration(
        "storage.decisions_retention",
        &raw.storage.decisions_retention,
    );
    let cache = c.size("storage.cache", &raw.storage.cache) as u64;
    let poll_interval = c.duration("sync.poll_interval", &raw.sync.poll_interval);
    let dedupe_window = c.duration("sync.dedupe_window", &raw.sync.dedupe_window);
    let ui_session = c.duration("ui.session", &raw.ui.session);
    let ui_language = Language::parse(&raw.ui.language);
    c.require(
        "ui.language",
        ui_language.is_some(),
        "must be \"en\" or \"ru\"",
    );
    let control_poll = c.duration("control.poll_interval", &raw.control.poll_interval);
    c.require(
        "control.poll_interval",
        // A value that does not parse is reported once, by `duration`.
        parse_duration(&raw.control.poll_interval).is_err()
            || control_poll >= Duration::from_secs(10),
        "must be at least 10s (each control sweep reads every watched task and open deal)",
    );

    c.at_least_one("worker.concurrency", raw.worker.concurrency);
    c.require(
        "worker.deals_per_batch",
        (1..=50).contains(&raw.worker.deals_per_batch),
        "must be between 1 and 50 (a round's deals share one stage-history call and one deal list, of 50 at most)",
    );
    c.at_least_one("worker.max_attempts", raw.worker.max_attempts);
    c.up_to(
        "worker.max_history_pages",
        raw.worker.max_history_pages,
        10_000,
    );
    c.up_to(
        "worker.max_sweep_pages",
        raw.worker.max_sweep_pages,
        100_000,
    );
    c.require(
        "rules.max_tunnel_depth",
        raw.rules.max_tunnel_depth >= 1,
        "must be at least 1 (1: a copy is never copied again)",
    );
    let worker_retry_base = c.duration("worker.retry_base", &raw.worker.retry_base);
    let worker_retry_max = c.duration("worker.retry_max", &raw.worker.retry_max);

    let format = c.parse(
        "log.format",
        match raw.log.format.as_str() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format (use \"pretty\" or \"json\")"
            )),
        },
        LogFormat::Pretty,
    );
    c.parse(
        "log.level",
        crate::telemetry::filter(&raw.log.level)
            .map(|_| ())
            .map_err(|e| format!("{:?} is not a log filter ({e})", raw.log.level)),
        (),
    );

    let calendar = match parse_calendar(&raw.calendar) {
        Ok(calendar) => Some(calendar),
        Err(errs) => {
            c.errors.extend(errs);
            None
        }
    };

    match (c.errors.is_empty(), listen, calendar) {
        (true, Some(listen), Some(calendar)) => Ok(Settings {
            server: ServerSettings {
                listen,
                max_body,
                admin_token: Secret::new(raw.server.admin_token),
                request_timeout,
                max_connections: raw.server.max_connections,
                max_connections_per_client: raw.server.max_connections_per_client,
            },
            portal: PortalSettings {
                webhook_url,
                application_token: Secret::new(raw.portal.application_token),
                requests_per_second: raw.portal.requests_per_second,
                burst: raw.portal.burst,
                timeout: portal_timeout,
                max_attempts: raw.portal.max_attempts,
                retry_base: portal_retry_base,
                retry_max: portal_retry_max,
                max_response,
                language,
            },
            rules: RulesSettings {
                dir: base_dir.join(&raw.rules.dir),
                max_tunnel_depth: raw.rules.max_tunnel_depth,
            },
            storage: StorageSettings {
                dir: base_dir.join(&raw.storage.dir),
                decisions_retention,
                cache,
            },
            calendar,
            sync: SyncSettings {
                poll_interval,
                dedupe_window,
            },
            worker: WorkerSettings {
                concurrency: raw.worker.concurrency,
                deals_per_batch: raw.worker.deals_per_batch,
                max_attempts: raw.worker.max_attempts,
                retry_base: worker_retry_base,
                retry_max: worker_retry_max,
                max_history_pages: raw.worker.max_history_pages,
                max_sweep_pages: raw.worker.max_sweep_pages,
                max_tunnel_depth: raw.rules.max_tunnel_depth,
            },
            control: ControlSettings {
                poll_interval: control_poll,
                quiet_outside_hours: raw.control.quiet_outside_hours,
            },
            ui: UiSettings {
                language: ui_language.unwrap_or(Language::En),
                secure_cookie: raw.ui.secure_cookie,
                session: ui_session,
            },
            log: LogSettings {
                format,
                level: raw.log.level,
            },
        }),
        _ => Err(ConfigError::Invalid(c.errors)),
    }
}
