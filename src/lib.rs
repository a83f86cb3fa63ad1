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
//! - [`intake`] answers the portal's outgoing webhook: it parses the raw form body, checks the
//!   token, records the event durably and only then answers 200.
//! - [`store`] is the only code that touches sled.
//! - [`worker`] takes queued deals, reads them and their new stage-history entries in shared
//!   `batch`es, asks [`rules`] what to do and applies the effects exactly once.
//! - [`rules`] is the rule language: loading with every error at once, and pure evaluation.
//! - [`calendar`] is deadline arithmetic (working days, hours, holidays, time zones).
//! - [`bitrix`] is the REST client: envelopes, `batch`, the leaky bucket, retries.
//! - [`sandbox`] is a simulated portal that speaks Bitrix24's wire format, for tests and the demo.
//! - [`worker::backfill`] applies the rules to the deals already sitting in their stages, once.
//! - [`text`] keeps texts from outside (a portal's error descriptions) to a size.
//! - [`metrics`] (`GET /metrics`) and [`rules::live`] (rules re-read on SIGHUP or a change) are
//!   for the operators.

pub mod bitrix;
pub mod calendar;
pub mod commands;
pub mod configuration;
pub mod diagnostics;
pub mod http;
pub mod intake;
pub mod ops;
pub mod rules;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod worker;
