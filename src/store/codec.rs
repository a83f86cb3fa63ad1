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
    let version = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("v").and_then(serde_json::Value::as_u64));
    if let Some(v) = version
        && v > u64::from(RECORD_VERSION)
    {
        {
            return Err(StoreError::Corrupt {
                tree,
                key: hex(key),
                message: format!("written by a newer b24-robot (record version {v})"),
            });
        }
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: hex(key),
        message: e.to_string(),
    })
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
