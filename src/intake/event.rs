//! Parsing an outgoing-webhook delivery: the raw `application/x-www-form-urlencoded` body that
//! Bitrix24 posts (`event`, `data[FIELDS][ID]`, `ts`, `auth[...]`), brackets raw or
//! percent-encoded (PHP's `http_build_query` encodes them), keys in any order, unknown keys
//! ignored, `event_handler_id` and `ts` optional.
//!
//! Parse, don't validate: the handler gets a [`DealEvent`] whose fields are already typed, or a
//! [`ParseError`] whose text is the one-line reason answered with 400.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

/// The form keys, decoded. Repeated keys keep the last value, as PHP does.
#[derive(Debug, Default)]
pub struct FormBody {
    fields: BTreeMap<String, String>,
}

impl FormBody {
    /// A loose decode that never fails: invalid percent-escapes and UTF-8 are kept lossily.
    pub fn parse(body: &[u8]) -> FormBody {
        let fields = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.trim().to_string(), v.into_owned()))
            .collect();
        FormBody { fields }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// `auth[application_token]`, the outgoing webhook's shared secret.
    pub fn application_token(&self) -> Option<&str> {
        self.get("auth[application_token]")
    }

    /// The body in a canonical form (sorted keys, secrets left out): the delivery's identity when
    /// it carries no `ts`.
    fn normalised(&self) -> String {
        self.fields
            .iter()
            .filter(|(k, _)| !k.starts_with("auth[") || k.as_str() == "auth[member_id]")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Compares a presented token with the configured one in constant time. An empty configured
/// token accepts nothing.
pub fn token_matches(presented: Option<&str>, configured: &str) -> bool {
    match presented {
        Some(p) if !configured.is_empty() => p.as_bytes().ct_eq(configured.as_bytes()).into(),
        _ => false,
    }
}

/// The events b24-robot records; the others are answered and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventName {
    DealAdd,
    DealUpdate,
    Other(String),
}

impl EventName {
    fn parse(text: &str) -> EventName {
        match text.trim().to_ascii_uppercase().as_str() {
            "ONCRMDEALADD" => EventName::DealAdd,
            "ONCRMDEALUPDATE" => EventName::DealUpdate,
            other => EventName::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            EventName::DealAdd => "ONCRMDEALADD",
            EventName::DealUpdate => "ONCRMDEALUPDATE",
            EventName::Other(name) => name,
        }
    }

    pub fn is_recorded(&self) -> bool {
        !matches!(self, EventName::Other(_))
    }
}

/// A delivery that passed the token check and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealEvent {
    name: EventName,
    deal_id: u64,
    ts: Option<u64>,
    member_id: Option<String>,
    dedupe_key: String,
}

impl DealEvent {
    pub fn name(&self) -> &EventName {
        &self.name
    }
    pub fn deal_id(&self) -> u64 {
        self.deal_id
    }
    pub fn ts(&self) -> Option<u64> {
        self.ts
    }
    pub fn member_id(&self) -> Option<&str> {
        self.member_id.as_deref()
    }
    /// Two deliveries with the same key are the same event: same name, deal, `ts` and portal;
    /// without `ts`, the same normalised body.
    pub fn dedupe_key(&self) -> &str {
        &self.dedupe_key
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expected Content-Type application/x-www-form-urlencoded, got {0}")]
    ContentType(String),
    #[error("no event name (form key `event`)")]
    NoEvent,
    #[error("no deal id (form key `data[FIELDS][ID]`)")]
    NoDealId,
    #[error("deal id {0:?} is not a positive integer")]
    BadDealId(String),
    #[error("ts {0:?} is not a Unix time in seconds")]
    BadTs(String),
}

/// Checks the content type: Bitrix24 always posts a form.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ParseError> {
    let ct = content_type.unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/x-www-form-urlencoded" {
        Ok(())
    } else if ct.is_empty() {
        Err(ParseError::ContentType("none".into()))
    } else {
        Err(ParseError::ContentType(truncate(ct, 80)))
    }
}

/// Turns a decoded form into a [`DealEvent`].
pub fn parse_event(form: &FormBody) -> Result<DealEvent, ParseError> {
    let name = EventName::parse(
        form.get("event")
            .filter(|s| !s.trim().is_empty())
            .ok_or(ParseError::NoEvent)?,
    );
    let raw_id = form.get("data[FIELDS][ID]").ok_or(ParseError::NoDealId)?;
    let deal_id = raw_id
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ParseError::BadDealId(truncate(raw_id, 40)))?;
    let ts = match form.get("ts").map(str::trim).filter(|s| !s.is_empty()) {
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| ParseError::BadTs(truncate(t, 40)))?,
        ),
        None => None,
    };
    let member_id = form.get("auth[member_id]").map(str::to_string);
    let dedupe_key = match ts {
        Some(ts) => format!(
            "{}|{}|{}|{}",
            name.as_str(),
            deal_id,
            ts,
            member_id.as_deref().unwrap_or("")
        ),
        None => format!("body|{:016x}", fnv1a(form.normalised().as_bytes())),
    };
    Ok(DealEvent {
        name,
        deal_id,
        ts,
        member_id,
        dedupe_key,
    })
}

fn truncate(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().count() > max {
        format!("{clean}…")
    } else {
        clean
    }
}

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between releases, and the key is
/// stored).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODED: &str = "event=ONCRMDEALUPDATE&event_handler_id=975&data%5BFIELDS%5D%5BID%5D=7405&ts=1766047124&auth%5Bdomain%5D=some-domain.bitrix24.com&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&auth%5Bmember_id%5D=d897063e1ce7c5eb9f04b9751eef5915&auth%5Bapplication_token%5D=jvh9y1ulvt2m6k5or90v9mg8nn32ozas";

    #[test]
    fn percent_encoded_brackets_parse() {
        let form = FormBody::parse(ENCODED.as_bytes());
        assert_eq!(
            form.application_token(),
            Some("jvh9y1ulvt2m6k5or90v9mg8nn32ozas")
        );
        let e = parse_event(&form).expect("valid");
        assert_eq!(e.name(), &EventName::DealUpdate);
        assert_eq!(e.deal_id(), 7405);
        assert_eq!(e.ts(), Some(1766047124));
    }

    #[test]
    fn raw_brackets_any_order_and_lowercase_names_parse() {
        let body = "auth[application_token]=t&data[FIELDS][ID]=39&event=onCrmDealAdd&extra[x]=1";
        let e = parse_event(&FormBody::parse(body.as_bytes())).expect("valid");
        assert_eq!(e.name(), &EventName::DealAdd);
        assert_eq!(e.deal_id(), 39);
        assert_eq!(e.ts(), None);
    }

    #[test]
    fn malformed_bodies_get_one_line_reasons() {
        let cases = [
            (
                "auth[application_token]=t&data[FIELDS][ID]=1",
                ParseError::NoEvent,
            ),
            ("event=ONCRMDEALUPDATE", ParseError::NoDealId),
            (
                "event=ONCRMDEALUPDATE&data[FIELDS][ID]=abc",
                ParseError::BadDealId("abc".into()),
            ),
            (
                "event=ONCRMDEALUPDATE&data[FIELDS][ID]=0",
                ParseError::BadDealId("0".into()),
            ),
            (
                "event=ONCRMDEALUPDATE&data[FIELDS][ID]=-5",
                ParseError::BadDealId("-5".into()),
            ),
            (
                "event=ONCRMDEALUPDATE&data[FIELDS][ID]=1&ts=yesterday",
                ParseError::BadTs("yesterday".into()),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                parse_event(&FormBody::parse(body.as_bytes())),
                Err(expected),
                "{body}"
            );
        }
    }

    #[test]
    fn the_same_delivery_has_the_same_key_and_another_ts_another() {
        let a = parse_event(&FormBody::parse(ENCODED.as_bytes())).expect("valid");
        let b = parse_event(&FormBody::parse(
            ENCODED.replace("1766047124", "1766047125").as_bytes(),
        ))
        .expect("valid");
        assert_ne!(a.dedupe_key(), b.dedupe_key());
        let raw = ENCODED.replace("%5B", "[").replace("%5D", "]");
        let c = parse_event(&FormBody::parse(raw.as_bytes())).expect("valid");
        assert_eq!(a.dedupe_key(), c.dedupe_key());
    }

    #[test]
    fn tokens_compare_exactly_and_an_empty_configuration_accepts_none() {
        assert!(token_matches(Some("abc"), "abc"));
        assert!(!token_matches(Some("abd"), "abc"));
        assert!(!token_matches(Some("ab"), "abc"));
        assert!(!token_matches(None, "abc"));
        assert!(!token_matches(Some(""), ""));
    }

    // ----- fuzzing: property tests with many cases -----

    use proptest::prelude::*;

    /// Cases per property: `PROPTEST_CASES` for a longer run, else what CI affords.
    fn fuzz_cases(ci: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ci)
    }

    /// The keys the parser reads; the extra keys of a property test avoid them.
    const KNOWN: [&str; 5] = [
        "event",
        "data[FIELDS][ID]",
        "ts",
        "auth[application_token]",
        "auth[member_id]",
    ];

    /// Text with the characters that make form bodies hard: separators, brackets, percent
    /// signs, plus signs, controls, non-ASCII letters and emoji.
    fn nasty_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[=&%+\\[\\]a-zA-Z0-9 \\-]{0,40}",
            "[\\x00-\\x1f\\u{80}-\\u{ff}\\u{400}-\\u{44f}\\u{1F600}-\\u{1F64F}]{0,20}",
        ]
    }

    /// Numbers as they may come: huge, negative, padded, with signs and exponents.
    fn number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[0-9]{15,60}",
            "[ +\\-]?[0-9]{0,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?[ ]?",
            Just(u64::MAX.to_string()),
            Just("18446744073709551616".to_string()),
        ]
    }

    /// Encodes pairs as a form body, percent-encoded (as PHP does) or with raw brackets.
    fn encode(pairs: &[(String, String)], raw_brackets: bool) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        let body = form.finish();
        if raw_brackets {
            body.replace("%5B", "[").replace("%5D", "]")
        } else {
            body
        }
    }

    /// Every input gets a value or an error, and an error is one short line.
    fn parses_or_refuses(form: &FormBody) {
        if let Err(error) = parse_event(form) {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text:?}");
            assert!(text.chars().count() < 400, "{text:?}");
        }
        let _ = token_matches(form.application_token(), "jvh9y1ulvt2m6k5or90v9mg8nn32ozas");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases(4000)))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            parses_or_refuses(&FormBody::parse(&body));
        }

        #[test]
        fn arbitrary_pairs_never_panic(
            pairs in proptest::collection::vec(
                (prop_oneof![nasty_text(), proptest::sample::select(KNOWN.to_vec()).prop_map(String::from)],
                 prop_oneof![nasty_text(), number_text()]),
                0..12),
            raw in any::<bool>(),
        ) {
            parses_or_refuses(&FormBody::parse(encode(&pairs, raw).as_bytes()));
        }

        #[test]
        fn deal_ids_parse_exactly_when_they_are_positive_u64s(id in number_text(), ts in number_text()) {
            let body = encode(
                &[("event".into(), "ONCRMDEALUPDATE".into()), ("data[FIELDS][ID]".into(), id.clone()), ("ts".into(), ts.clone())],
                false,
            );
            let parsed = parse_event(&FormBody::parse(body.as_bytes()));
            let expected_id = id.trim().parse::<u64>().ok().filter(|n| *n > 0);
            let expected_ts = ts.trim().parse::<u64>().ok();
            match (expected_id, ts.trim().is_empty(), expected_ts) {
                (None, _, _) => prop_assert!(matches!(parsed, Err(ParseError::BadDealId(_))), "{parsed:?}"),
                (Some(_), false, None) => prop_assert!(matches!(parsed, Err(ParseError::BadTs(_))), "{parsed:?}"),
                (Some(id), _, ts) => {
                    let event = parsed.expect("valid");
                    prop_assert_eq!(event.deal_id(), id);
                    prop_assert_eq!(event.ts(), ts);
                }
            }
        }

        #[test]
        fn a_valid_event_with_random_extra_keys_keeps_its_deal_and_name(
            deal in 1..u64::MAX,
            ts in any::<u64>(),
            extra in proptest::collection::vec((nasty_text(), nasty_text()), 0..10),
            seed in any::<u64>(),
            raw in any::<bool>(),
        ) {
            let mut pairs: Vec<(String, String)> = vec![
                ("event".into(), "onCrmDealUpdate".into()),
                ("data[FIELDS][ID]".into(), deal.to_string()),
                ("ts".into(), ts.to_string()),
                ("auth[application_token]".into(), "tok".into()),
            ];
            // Extra keys go anywhere, but never replace one the parser reads (keys are trimmed).
            for (i, (k, v)) in extra.into_iter().enumerate() {
                if KNOWN.contains(&k.trim()) {
                    continue;
                }
                let at = (seed.rotate_left(i as u32 * 7) as usize) % (pairs.len() + 1);
                pairs.insert(at, (k, v));
            }
            let form = FormBody::parse(encode(&pairs, raw).as_bytes());
            let event = parse_event(&form).expect("a valid event stays valid");
            prop_assert_eq!(event.deal_id(), deal);
            prop_assert_eq!(event.ts(), Some(ts));
            prop_assert_eq!(event.name(), &EventName::DealUpdate);
            prop_assert!(token_matches(form.application_token(), "tok"));
        }

        #[test]
        fn content_types_and_tokens_never_panic(ct in nasty_text(), presented in nasty_text(), configured in nasty_text()) {
            let _ = check_content_type(Some(&ct));
            prop_assert_eq!(
                token_matches(Some(&presented), &configured),
                !configured.is_empty() && presented == configured
            );
        }
    }

    #[test]
    fn content_type_must_be_a_form() {
        assert!(
            check_content_type(Some("application/x-www-form-urlencoded; charset=UTF-8")).is_ok()
        );
        assert!(check_content_type(Some("application/json")).is_err());
        assert!(check_content_type(None).is_err());
    }
}
