//! `server.time`: the portal's clock, what a client reads to learn the portal's "now" (and what
//! our client probes an unreachable portal with, since it reads none of the portal's data).

use serde_json::json;

use super::Reply;
use crate::sandbox::store::PortalState;

/// The current server time "in the server's time zone, not the user's", `YYYY-MM-DDThh:mm:ss±hh:mm`
/// (`api-reference/common/system/server-time.md`); it follows the sim's clock, so a test that
/// advanced it sees the advanced time. No parameters, no errors of its own.
pub(super) fn server_time(st: &PortalState) -> Reply {
    Reply::of(json!(st.now()))
}
