//! Redirects: a portal rename (judged by `rename`) is followed for every later call, any other
//! redirect is refused, its target shown without the secret.

use std::sync::PoisonError;

use url::Url;

use super::{Client, origin_of};
use crate::bitrix::error::CallError;
use crate::bitrix::rename;

impl Client {
    /// Follows a redirect if it is a portal rename: from then on every call goes to the new
    /// origin, with the same webhook path. Otherwise the call fails, nothing is sent there.
    pub(super) fn follow(&self, method: &str, location: &Url) -> Result<(), CallError> {
        let mut base = self
            .inner
            .base
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = origin_of(&base);
        if let Err(refusal) = rename::judge(&self.inner.configured, &base, location) {
            drop(base);
            self.bump(|c| &c.redirects_refused);
            let target = self.shown_origin(location);
            tracing::warn!(method, from = %old, to = %target, reason = refusal.reason(),
                "redirect refused: not a portal rename (the call failed; check the portal and portal.webhook_url)");
            return Err(CallError::RedirectRefused {
                method: method.to_owned(),
                target,
                reason: refusal.reason(),
            });
        }
        let mut moved = base.clone();
        let switched = moved.set_scheme(location.scheme()).is_ok()
            && moved.set_host(location.host_str()).is_ok()
            && moved.set_port(location.port()).is_ok();
        if switched && origin_of(&moved) != old {
            tracing::warn!(from = %old, to = %origin_of(&moved),
                "portal renamed (302): using the new address (set portal.webhook_url to it; /readyz shows it until then)");
            *base = moved;
            self.bump(|c| &c.redirects);
        }
        Ok(())
    }

    /// A redirect's origin for errors and logs; hidden when its host names the secret code (a
    /// hostile portal knows the code: it was sent the path).
    fn shown_origin(&self, location: &Url) -> String {
        let origin = origin_of(location);
        let code = &self.inner.secret_code;
        if !code.is_empty() && origin.to_ascii_lowercase().contains(code.as_str()) {
            "<a host naming the webhook's secret>".to_owned()
        } else {
            origin
        }
    }
}
