//! The on-disk shapes: keys (integers big-endian, so that keys sort as numbers) and record
//! bytes (JSON with a version tag; a record of a newer version is refused, not misread).

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{EffectRecord, RECORD_VERSION, StoreError};

pub(super) fn entry_key(deal_id: u64, entry_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&deal_id.to_be_bytes());
    key.extend_from_slice(&entry_id.to_be_bytes());
    key
}

pub(super) fn effect_key(e: &EffectRecord) -> Vec<u8> {
    let mut key = entry_key(e.deal_id, e.entry_id);
    key.extend_from_slice(e.rule.as_bytes());
    key.push(0);
    key.extend_from_slice(&e.index.to_be_bytes());
    if let Some(subject) = &e.subject {
        key.extend_from_slice(subject.as_bytes());
    }
    key
}

pub(super) fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree: "-",
        key: String::new(),
        message: format!("cannot encode: {e}"),
    })
}

pub(super) fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    if let Some(v) = version_of(bytes)
        && v > u64::from(RECORD_VERSION)
    {
        return Err(StoreError::Corrupt {
            tree,
            key: hex(key),
            message: format!("written by a newer b24-robot (record version {v})"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: hex(key),
        message: e.to_string(),
    })
}

/// The record's version tag (`v`), when it is an object with an unsigned integer `v`. Read
/// without building the record's whole JSON tree (the other keys are skipped, not kept): the
/// worker decodes a queue record on every change of its job.
fn version_of(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Tag {
        v: Option<u64>,
    }
    // Every record is written with `v` first (`{"v":1,...`): read it there without a parse.
    if let Some(rest) = bytes.strip_prefix(br#"{"v":"#) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=3).contains(&digits) && matches!(rest.get(digits), Some(b',' | b'}')) {
            return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
        }
    }
    serde_json::from_slice::<Tag>(bytes).ok().and_then(|t| t.v)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

pub(super) fn unwrap_tx<T>(
    result: Result<T, TransactionError<StoreError>>,
) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::QueuedDeal;

    #[test]
    fn the_version_tag_is_read_whatever_else_the_record_holds() {
        assert_eq!(
            version_of(br#"{"deal_id":1,"v":1,"x":[1,{"a":2}]}"#),
            Some(1)
        );
        assert_eq!(version_of(br#"{"deal_id":1}"#), None);
        assert_eq!(version_of(br#"{"v":"one"}"#), None);
        assert_eq!(version_of(b"[1,2]"), None);
        assert_eq!(version_of(b"not json"), None);
        assert_eq!(version_of(br#"{"v":12,"deal_id":1}"#), Some(12));
        assert_eq!(version_of(br#"{"v":1}"#), Some(1));
        assert_eq!(version_of(br#"{"v":1.5,"deal_id":1}"#), None);
        assert_eq!(version_of(br#"{"v":1 ,"deal_id":1}"#), Some(1));
    }

    #[test]
    fn a_record_of_a_newer_version_is_refused_by_its_version() {
        let newer = br#"{"v":9,"deal_id":1,"generation":1,"events":1,"event_ids":[],"first_at_ms":0,"attempts":0,"not_before_ms":0,"last_error":null,"parked":false,"new_field":1}"#;
        let error = decode::<QueuedDeal>("queue", &1u64.to_be_bytes(), newer)
            .expect_err("a newer record is not misread");
        assert!(error.to_string().contains("record version 9"), "{error}");
    }
}
