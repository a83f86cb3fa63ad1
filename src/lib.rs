//! b24-robot: a sales department's standards, applied by themselves in Bitrix24.
//!
//! The data flows one way, and each arrow is a module boundary:
//!
//! ```text
//! Bitrix24 ──POST──▶ intake ──▶ store (sled: queue, deals, entries, effects)
//!                                   │
//!                                   ▼
//!                 sweep ──▶ worker ──▶ rules (pure) ──▶ worker ──▶ bitrix (REST client) ──▶ Bitrix24
//! ```
//!
//! The core, in the order an event travels:
//! - [`intake`] answers the portal's outgoing webhook: it parses the raw form body, checks the
//!   token, records the event durably and only then answers 200.
//! - [`store`] is the only code that touches sled.
//! - [`worker`] takes queued deals, reads them and their new stage-history entries in shared
//!   `batch`es, asks [`rules`] what to do and applies the effects exactly once; the sweep and
//!   the backfill are its other modes, and beside it `worker::control` watches the clock: the
//!   timers of the time-driven rules, the control sweep (overdue tasks, deals without a next
//!   step) and the digests.
//! - [`rules`] is the rule language: loading with every error at once, pure evaluation, the
//!   rules in force and their reload.
//! - [`bitrix`] is the REST client: envelopes, `batch`, the leaky bucket, retries, one builder
//!   per CRM call.
//!
//! Beside it:
//! - [`reports`] are the pure computations behind `report`, the admin API's reports and the
//!   dashboard: plan, nps, losses, stages, tasks and deals over a copy of the deals.
//! - [`calendar`] is deadline arithmetic (working days, hours, holidays, time zones), pure.
//! - [`clock`] is what "now" is for the time-driven rules: the system clock, or one that tests
//!   and the demo move on.
//! - [`duration`] is the one duration syntax of config values, rule deadlines and scenario waits.
//! - [`diagnostics`] is the one `file:line:col` problem type and spanned-TOML reader.
//! - [`configuration`] is the settings; [`telemetry`] the logs; [`text`] bounds outside texts.
//! - [`ops`] is the operators' side: the admin API, the web dashboard, `/metrics`, `/healthz`
//!   and `/readyz`.
//! - [`http`] serves the one listener (header timeout, connection limits).
//! - [`startup`] builds the one [`startup::Application`] that `serve`, the demo and the tests
//!   run, and stops it on purpose.
//! - [`commands`] is the command line, one file a command.
//! - [`sandbox`] is a simulated portal that speaks Bitrix24's wire format, for the tests, the
//!   demo, the sandbox command and the bench; production code never imports it.

pub mod bitrix;
pub mod calendar;
pub mod clock;
pub mod commands;
pub mod configuration;
pub mod diagnostics;
pub mod duration;
pub mod http;
pub mod intake;
pub mod ops;
pub mod reports;
pub mod rules;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod worker;
