//! The operators' side of the service, on its one listener next to the events: the admin API
//! ([`admin`], `/admin/...` with the admin token), the web dashboard ([`ui`], `/ui/`, with the
//! same token or a session from its login form), the Prometheus metrics ([`metrics`],
//! `/metrics`) and the health checks ([`health`], `/healthz` and `/readyz`). Each reads what the
//! core keeps (counters, the store through blocking threads), never drives it.

pub mod admin;
pub mod health;
pub mod metrics;
pub mod ui;
