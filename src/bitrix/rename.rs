//! Which redirects are portal renames, and so may be followed with the webhook's secret.
//!
//! A renamed Bitrix24 portal answers `302` with the new address in `Location`, and the client
//! re-posts there, keeping the webhook path, which holds the secret (reference §3.2, "Portal
//! rename", from D-EN `settings/how-to-call-rest-api/change-domen.md`). Any other redirect would
//! hand that secret, and every later read and write, to whoever the `Location` names. So a
//! redirect is followed only when [`judge`] says it is a rename:
//!
//! | the new address | followed? |
//! |---|---|
//! | the address in use (same scheme, host and port) | yes: the same portal, asked again |
//! | `http` while the address in use is `https` | no: a downgrade |
//! | `https`, or `http` when the address in use is `http` already (the simulator, tests) | the host decides |
//! | another port than the configured webhook's (the scheme's default counts as the same) | no |
//! | an IP address | no: a portal has a name |
//! | `<name>.bitrix24.<zone>` for a zone of [`BITRIX24_ZONES`] | yes |
//! | under the configured portal's registrable domain (`crm.example.ru` → `crm2.example.ru`) | yes |
//! | anything else | no |
//!
//! The registrable domain is found by a heuristic, not the Public Suffix List: the last two
//! labels of the host, or the last three when the next-to-last is a common second-level label
//! ([`SECOND_LEVEL_LABELS`]: `example.co.uk`, `example.com.ru`, `example.msk.ru`). It errs on
//! the safe side: a suffix it does not know makes a rename refused, which an operator mends by
//! setting `portal.webhook_url` to the new address; it never lets a sibling under a public
//! suffix in.

use url::{Host, Url};

/// Bitrix24's cloud zones: a portal is `<name>.bitrix24.<zone>`. The list of issue 8, item 1
/// (the reference, `shared/reference/bitrix24-api.md`, names `.ru`, `.com`, `.de` and `.by` in
/// its own examples but has no list). `bitrix24.site` and `bitrix24.shop` are left out on
/// purpose: they host the pages anyone builds with Bitrix24's site builder, not portals. A zone
/// missing here is refused with a clear error, never followed by mistake.
pub(crate) const BITRIX24_ZONES: &[&str] = &[
    "ru", "com", "de", "by", "kz", "ua", "eu", "es", "fr", "it", "pl", "uk", "in", "tr", "com.tr",
    "id", "com.br", "cn", "jp", "vn",
];

/// Second-level labels under a country code that are public suffixes themselves (`co.uk`,
/// `com.ru`, `msk.ru`): a registrable domain under them has three labels.
const SECOND_LEVEL_LABELS: &[&str] = &[
    "ac", "co", "com", "edu", "gov", "ltd", "me", "msk", "net", "ne", "or", "org", "plc", "spb",
];

/// Why a redirect is not a portal rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// From `https` to `http`.
    Downgrade,
    /// Another port than the configured webhook's.
    OtherPort,
    /// An IP address instead of a name.
    IpAddress,
    /// Neither a Bitrix24 portal name nor under the configured portal's domain.
    ForeignHost,
}

impl Refusal {
    /// One line for errors and logs.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Downgrade => "it switches from https to http",
            Refusal::OtherPort => "it names another port",
            Refusal::IpAddress => "it names an IP address, not a portal",
            Refusal::ForeignHost => {
                "it is neither a Bitrix24 portal (*.bitrix24.<zone>) nor under the configured portal's domain"
            }
        }
    }
}

/// Whether a redirect from `current` (the address in use) to `location` is a rename of the
/// portal configured as `configured`.
pub(crate) fn judge(configured: &Url, current: &Url, location: &Url) -> Result<(), Refusal> {
    if location.origin() == current.origin() {
        return Ok(());
    }
    match location.scheme() {
        "https" => {}
        "http" if current.scheme() == "http" => {}
        _ => return Err(Refusal::Downgrade),
    }
    if location.port() != configured.port() {
        return Err(Refusal::OtherPort);
    }
    let host = match location.host() {
        Some(Host::Domain(host)) => host.trim_end_matches('.').to_ascii_lowercase(),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(Refusal::IpAddress),
        None => return Err(Refusal::ForeignHost),
    };
    if is_bitrix24_portal(&host) {
        return Ok(());
    }
    let home = match configured.host() {
        Some(Host::Domain(home)) => home.trim_end_matches('.').to_ascii_lowercase(),
        _ => return Err(Refusal::ForeignHost),
    };
    // A Bitrix24 portal's own domain is Bitrix24's: its siblings were judged just above.
    if is_bitrix24_portal(&home) {
        return Err(Refusal::ForeignHost);
    }
    match (registrable_domain(&home), registrable_domain(&host)) {
        (Some(home), Some(new)) if home == new => Ok(()),
        _ => Err(Refusal::ForeignHost),
    }
}

/// `<name>.bitrix24.<zone>`, with at least one label before `bitrix24`.
fn is_bitrix24_portal(host: &str) -> bool {
    BITRIX24_ZONES.iter().any(|zone| {
        host.strip_suffix(zone)
            .and_then(|rest| rest.strip_suffix(".bitrix24."))
            .is_some_and(|name| !name.is_empty() && !name.ends_with('.'))
    })
}

/// The registrable domain of `host` by the heuristic of the module comment; `None` for a host
/// of one label (`localhost`) or one that is only a public suffix.
fn registrable_domain(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|label| label.is_empty()) {
        return None;
    }
    let n = labels.len();
    let country = n >= 2 && labels[n - 1].len() == 2;
    let width = if country && SECOND_LEVEL_LABELS.contains(&labels[n - 2]) {
        3
    } else {
        2
    };
    (n >= width).then(|| labels[n - width..].join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    /// The policy table: (configured webhook, Location, verdict).
    #[test]
    fn only_renames_to_a_bitrix24_portal_or_a_sibling_host_are_followed() {
        use Refusal::*;
        let cases: &[(&str, &str, Result<(), Refusal>)] = &[
            // Bitrix24 zones.
            ("https://a.bitrix24.ru/", "https://b.bitrix24.ru/x", Ok(())),
            ("https://a.bitrix24.ru/", "https://b.bitrix24.com/x", Ok(())),
            ("https://a.bitrix24.ru/", "https://b.bitrix24.de/x", Ok(())),
            (
                "https://a.bitrix24.ru/",
                "https://b.bitrix24.com.br/",
                Ok(()),
            ),
            ("https://a.bitrix24.ru/", "https://B.Bitrix24.KZ/", Ok(())),
            (
                "https://crm.example.ru/",
                "https://new.bitrix24.eu/",
                Ok(()),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://bitrix24.ru/",
                Err(ForeignHost),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://evilbitrix24.ru/",
                Err(ForeignHost),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://a.bitrix24.ru.evil.com/",
                Err(ForeignHost),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://a.bitrix24.site/",
                Err(ForeignHost),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://a.bitrix24.xyz/",
                Err(ForeignHost),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://evil.com/rest/1/s/",
                Err(ForeignHost),
            ),
            // The configured portal's own domain.
            (
                "https://crm.example.ru/",
                "https://crm2.example.ru/",
                Ok(()),
            ),
            ("https://crm.example.ru/", "https://example.ru/", Ok(())),
            ("https://example.ru/", "https://b24.example.ru/", Ok(())),
            (
                "https://crm.example.co.uk/",
                "https://crm2.example.co.uk/",
                Ok(()),
            ),
            (
                "https://crm.example.com.ru/",
                "https://new.example.com.ru/",
                Ok(()),
            ),
            (
                "https://crm.example.ru/",
                "https://crm.example.com/",
                Err(ForeignHost),
            ),
            (
                "https://crm.example.ru/",
                "https://example.ru.evil.com/",
                Err(ForeignHost),
            ),
            (
                "https://crm.example.co.uk/",
                "https://other.co.uk/",
                Err(ForeignHost),
            ),
            (
                "https://crm.example.com.ru/",
                "https://evil.com.ru/",
                Err(ForeignHost),
            ),
            (
                "https://crm.example.msk.ru/",
                "https://evil.msk.ru/",
                Err(ForeignHost),
            ),
            (
                "https://localhost/",
                "https://other.localhost/",
                Err(ForeignHost),
            ),
            // Schemes.
            (
                "https://a.bitrix24.ru/",
                "http://b.bitrix24.ru/",
                Err(Downgrade),
            ),
            (
                "https://crm.example.ru/",
                "http://crm.example.ru/",
                Err(Downgrade),
            ),
            ("http://crm.example.ru/", "http://crm2.example.ru/", Ok(())),
            ("http://crm.example.ru/", "https://crm2.example.ru/", Ok(())),
            // Ports.
            (
                "https://a.bitrix24.ru/",
                "https://b.bitrix24.ru:8443/",
                Err(OtherPort),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://b.bitrix24.ru:443/",
                Ok(()),
            ),
            (
                "https://crm.example.ru:8443/",
                "https://crm2.example.ru:8443/",
                Ok(()),
            ),
            (
                "https://crm.example.ru:8443/",
                "https://crm2.example.ru/",
                Err(OtherPort),
            ),
            (
                "http://127.0.0.1:5000/",
                "http://127.0.0.1:5001/rest/1/s/",
                Err(OtherPort),
            ),
            // IP addresses.
            (
                "https://a.bitrix24.ru/",
                "https://10.0.0.1/",
                Err(IpAddress),
            ),
            ("https://a.bitrix24.ru/", "https://[::1]/", Err(IpAddress)),
            (
                "http://127.0.0.1:5000/",
                "http://127.0.0.2:5000/",
                Err(IpAddress),
            ),
            (
                "http://127.0.0.1:5000/",
                "https://127.0.0.1:5000/",
                Err(IpAddress),
            ),
            // The same origin: asked again.
            (
                "http://127.0.0.1:5000/",
                "http://127.0.0.1:5000/rest/1/s/m.json",
                Ok(()),
            ),
            (
                "https://a.bitrix24.ru/",
                "https://a.bitrix24.ru/other",
                Ok(()),
            ),
        ];
        for (configured, location, verdict) in cases {
            let configured = url(configured);
            assert_eq!(
                judge(&configured, &configured, &url(location)),
                *verdict,
                "{configured} -> {location}"
            );
        }
    }

    #[test]
    fn after_a_rename_to_https_there_is_no_way_back_to_http() {
        let configured = url("http://crm.example.ru/");
        let current = url("https://crm2.example.ru/");
        assert_eq!(
            judge(&configured, &current, &url("http://crm3.example.ru/")),
            Err(Refusal::Downgrade)
        );
        assert_eq!(
            judge(&configured, &current, &url("https://crm3.example.ru/")),
            Ok(())
        );
    }

    #[test]
    fn the_registrable_domain_heuristic_keeps_public_suffixes_apart() {
        assert_eq!(
            registrable_domain("a.b.example.ru").as_deref(),
            Some("example.ru")
        );
        assert_eq!(
            registrable_domain("x.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(
            registrable_domain("example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(registrable_domain("localhost"), None);
        assert_eq!(registrable_domain("a..b"), None);
    }
}
