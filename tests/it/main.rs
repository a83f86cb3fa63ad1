//! One integration binary: the real service (intake over HTTP, worker, sweep, sled store)
//! against the project's simulated Bitrix24 portal.

mod child;
mod helpers;

// Operations
mod admin;
mod operations;

// The service core (issue 2)
mod crash;
mod effects_once;
mod faults;
mod intake;
mod intake_batches;
mod stage_entries;
mod sweep;

// The rule language (issue 3)
mod check;
mod kinds;
mod shipped_rules;
mod tunnel_chains;

// Tools for integrators (issue 5)
mod backfill;
mod tools;

// Reliability (issue 4)
mod crash_cycles;
mod hardening;

// A hostile portal and a damaged store (issue 8)
mod damaged_store;
mod disk;
mod full_batches;
mod hostile_history;
mod malformed_deal;
mod outage;
mod portal_bounds;

// Made for integrators (issue 10)
mod durations;
mod integrator;
mod sandbox_portal;

// Control loops: timers, overdue tasks, next steps, digests (issue 12)
mod control;

// Plans, reports and the web dashboard (issue 13)
mod browser;
mod dashboard;
mod report_copy;
mod report_freshness;
mod reports;
