//! PHP-style query strings for `batch` sub-calls.
//!
//! Inside a `batch`, every sub-call is one string `"method?query"`, and Bitrix24 parses the query
//! with PHP's own rules (`parse_str`). So we build it the way PHP's `http_build_query` does with
//! its default `PHP_QUERY_RFC1738` encoding: nested objects become `key[sub]`, arrays
//! `key[0]`, `key[1]`, ...; every byte except ASCII letters, digits and `-_.` is percent-encoded
//! (brackets too), and a space becomes `+`. Where JSON has no PHP counterpart we follow what PHP
//! does with the nearest value: `true` → `1`, `false` → `0`. Unlike PHP (which drops `null`), a
//! `null` becomes an empty value (`key=`): that is how a filter asks for an empty field.
//! Empty objects and arrays produce nothing, as in PHP.

use serde_json::Value;

/// The PHP `http_build_query` of a JSON object (or array, keyed by index). Scalars at the top
/// level have no key and produce an empty string. Key order is kept.
#[must_use]
pub fn php_query(params: &Value) -> String {
    let mut pairs: Vec<String> = Vec::new();
    match params {
        Value::Object(map) => {
            for (key, value) in map {
                push_pairs(&mut pairs, &encode(key), value);
            }
        }
        Value::Array(items) => {
            for (index, value) in items.iter().enumerate() {
                push_pairs(&mut pairs, &index.to_string(), value);
            }
        }
        _ => {}
    }
    pairs.join("&")
}

/// Appends `prefix=value` pairs for `value`; `prefix` is already encoded.
fn push_pairs(pairs: &mut Vec<String>, prefix: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                push_pairs(pairs, &format!("{prefix}%5B{}%5D", encode(key)), inner);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                push_pairs(pairs, &format!("{prefix}%5B{index}%5D"), inner);
            }
        }
        Value::Null => pairs.push(format!("{prefix}=")),
        Value::Bool(flag) => pairs.push(format!("{prefix}={}", if *flag { "1" } else { "0" })),
        Value::Number(number) => pairs.push(format!("{prefix}={}", encode(&number.to_string()))),
        Value::String(text) => pairs.push(format!("{prefix}={}", encode(text))),
    }
}

/// PHP's `urlencode`: letters, digits and `-_.` stay, space becomes `+`, the rest is `%XX`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::php_query;
    use serde_json::json;

    #[test]
    fn flat_scalars_are_key_value_pairs() {
        assert_eq!(php_query(&json!({"id": 5, "name": "a b"})), "id=5&name=a+b");
    }

    #[test]
    fn nested_filter_keys_are_bracketed_and_encoded() {
        let query = php_query(&json!({
            "entityTypeId": 2,
            "filter": {"OWNER_ID": 5, ">ID": 100},
            "order": {"ID": "ASC"}
        }));
        assert_eq!(
            query,
            "entityTypeId=2&filter%5BOWNER_ID%5D=5&filter%5B%3EID%5D=100&order%5BID%5D=ASC"
        );
    }

    #[test]
    fn arrays_are_indexed_and_nesting_goes_deep() {
        let query = php_query(&json!({
            "select": ["ID", "STAGE_ID"],
            "fields": {"PHONE": [{"VALUE": "112233", "VALUE_TYPE": "WORK"}]}
        }));
        assert_eq!(
            query,
            "select%5B0%5D=ID&select%5B1%5D=STAGE_ID\
             &fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=112233\
             &fields%5BPHONE%5D%5B0%5D%5BVALUE_TYPE%5D=WORK"
        );
    }

    #[test]
    fn reserved_characters_in_values_are_escaped() {
        assert_eq!(
            php_query(&json!({"q": "a&b=c#d%e+f/g?h"})),
            "q=a%26b%3Dc%23d%25e%2Bf%2Fg%3Fh"
        );
    }

    #[test]
    fn cyrillic_is_utf8_percent_encoded() {
        assert_eq!(
            php_query(&json!({"fields": {"TITLE": "Сделка №1"}})),
            "fields%5BTITLE%5D=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0+%E2%84%961"
        );
    }

    #[test]
    fn bools_null_floats_and_empty_containers_follow_php() {
        assert_eq!(
            php_query(
                &json!({"a": true, "b": false, "c": null, "d": 1.5, "e": [], "f": {}, "g": "Y"})
            ),
            "a=1&b=0&c=&d=1.5&g=Y"
        );
    }

    #[test]
    fn top_level_arrays_use_positional_keys_and_scalars_give_nothing() {
        assert_eq!(
            php_query(&json!([123, {"POST_MESSAGE": "x"}])),
            "0=123&1%5BPOST_MESSAGE%5D=x"
        );
        assert_eq!(php_query(&json!("x")), "");
        assert_eq!(php_query(&json!({})), "");
    }
}
