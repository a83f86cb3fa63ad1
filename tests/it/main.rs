//! One integration binary: the real service (intake over HTTP, worker, sweep, sled store)
//! against the project's simulated Bitrix24 portal.

mod helpers;
mod stage_entries;
