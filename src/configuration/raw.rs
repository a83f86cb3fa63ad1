//! The raw layer: the file and the environment as written, one struct a section, with
//! `deny_unknown_fields` (a typo in a key fails at start) and the built-in defaults. Its
//! serialized shape is also the list of every key ([`known_keys`]) that `check` matches against.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSettings {
    pub(super) server: RawServer,
    pub(super) portal: RawPortal,
    pub(super) rules: RawRules,
    pub(super) storage: RawStorage,
    pub(super) calendar: RawCalendar,
    pub(super) sync: RawSync,
    pub(super) worker: RawWorker,
    pub(super) control: RawControl,
    pub(super) ui: RawUi,
    pub(super) log: RawLog,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) max_body: String,
    pub(super) admin_token: String,
    pub(super) request_timeout: String,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_client: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            max_body: "64KiB".into(),
            admin_token: String::new(),
            request_timeout: "10s".into(),
            max_connections: 1024,
            max_connections_per_client: 256,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPortal {
    pub(super) webhook_url: String,
    pub(super) application_token: String,
    pub(super) requests_per_second: f64,
    pub(super) burst: u32,
    pub(super) timeout: String,
    pub(super) max_attempts: u32,
    pub(super) retry_base: String,
    pub(super) retry_max: String,
    pub(super) max_response: String,
    pub(super) language: String,
}

impl Default for RawPortal {
    fn default() -> Self {
        RawPortal {
            webhook_url: String::new(),
            application_token: String::new(),
            requests_per_second: 2.0,
            burst: 50,
            timeout: "30s".into(),
            max_attempts: 5,
            retry_base: "500ms".into(),
            retry_max: "30s".into(),
            max_response: "32MiB".into(),
            language: "ru".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRules {
    pub(super) dir: String,
    pub(super) max_tunnel_depth: u32,
}

impl Default for RawRules {
    fn default() -> Self {
        RawRules {
            dir: "rules".into(),
            max_tunnel_depth: 3,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStorage {
    pub(super) dir: String,
    pub(super) decisions_retention: String,
    pub(super) cache: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            dir: "data".into(),
            decisions_retention: "180d".into(),
            cache: "16MiB".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCalendar {
    pub(super) timezone: String,
    pub(super) workdays: Vec<String>,
    pub(super) hours: String,
    pub(super) holidays: Vec<String>,
}

impl Default for RawCalendar {
    fn default() -> Self {
        RawCalendar {
            timezone: "Europe/Moscow".into(),
            workdays: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            hours: "09:00-18:00".into(),
            holidays: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSync {
    pub(super) poll_interval: String,
    pub(super) dedupe_window: String,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            poll_interval: "60s".into(),
            dedupe_window: "24h".into(),
        }
    }
}

/// `[ui]`: the web dashboard (`control.md`, "The web dashboard").
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUi {
    pub(super) language: String,
    pub(super) secure_cookie: bool,
    pub(super) session: String,
}

impl Default for RawUi {
    fn default() -> Self {
        RawUi {
            language: "en".into(),
            secure_cookie: false,
            session: "12h".into(),
        }
    }
}

/// `[control]`: the time-driven rules (`control.md`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawControl {
    pub(super) poll_interval: String,
    pub(super) quiet_outside_hours: bool,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            poll_interval: "5m".into(),
            quiet_outside_hours: true,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWorker {
    pub(super) concurrency: usize,
    pub(super) deals_per_batch: usize,
    pub(super) max_attempts: u32,
    pub(super) retry_base: String,
    pub(super) retry_max: String,
    pub(super) max_history_pages: usize,
    pub(super) max_sweep_pages: usize,
}

impl Default for RawWorker {
    fn default() -> Self {
        RawWorker {
            // Rounds move in step under load: all read, then all write, so each cycle has one
            // request of reads alone (3 calls a round) beside its full requests of writes. 8
            // rounds make a cycle of 400 deals rather than 200: half as many such requests
            // (0.025-0.027 requests an entry for 1,000 deals moved at once, 0.029-0.031 with 4).
            // A short queue makes fewer rounds anyway: it waits for nothing.
            concurrency: 8,
            deals_per_batch: 50,
            max_attempts: 10,
            retry_base: "2s".into(),
            retry_max: "10m".into(),
            // 1,000 entries: far more moves than a deal makes between two rounds, and more than
            // a deal's whole history, read once when the service first meets the deal.
            max_history_pages: 20,
            // 50,000 entries a sweep (21 requests): a long downtime is caught up in a few
            // sweeps, and a portal that pages forever costs at most this.
            max_sweep_pages: 1_000,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) format: String,
    pub(super) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

/// Every key the settings know, as `section.key`.
pub(super) fn known_keys() -> Vec<(String, Vec<String>)> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(serde_json::Value::Object(sections)) => sections
            .into_iter()
            .map(|(section, keys)| {
                let keys = keys
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                (section, keys)
            })
            .collect(),
        _ => Vec::new(),
    }
}
