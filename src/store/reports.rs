//! The report copy (`control.md`, "Where the data comes from"): what the reports need of each
//! deal and its stage history, kept in the `report_copy` tree and refreshed incrementally by
//! `crate::worker::report_copy`, so that a report on a large portal costs a handful of requests
//! once the copy is warm.
//!
//! Keys: `d` + the deal id (big-endian) → a [`ReportDeal`]; `m` → the [`CopyMeta`].

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode, unwrap_tx};
use super::{Store, StoreError};
use crate::reports::ReportDeal;

const META: &[u8] = b"m";

fn deal_key(id: u64) -> Vec<u8> {
    let mut key = vec![b'd'];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// How far the copy has read the portal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyMeta {
    #[serde(default = "super::records::record_version")]
    pub v: u8,
    /// When the last refresh ended (RFC 3339, the rules' clock): how fresh a report's data is.
    pub as_of: Option<String>,
    /// The newest `DATE_MODIFY` read (as the portal prints it): the next refresh lists the deals
    /// modified from then on.
    pub deals_modified: Option<String>,
    /// The highest stage-history entry id read: the next refresh lists the entries past it.
    pub history_id: u64,
}

impl Store {
    /// The copy's progress; `None` before its first refresh.
    pub fn report_copy_meta(&self) -> Result<Option<CopyMeta>, StoreError> {
        match self.trees()?.report_copy.get(META)? {
            Some(bytes) => decode("report_copy", META, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// One deal of the copy.
    pub fn report_deal(&self, id: u64) -> Result<Option<ReportDeal>, StoreError> {
        let key = deal_key(id);
        match self.trees()?.report_copy.get(&key)? {
            Some(bytes) => decode("report_copy", &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every deal of the copy, by id.
    pub fn report_deals(&self) -> Result<Vec<ReportDeal>, StoreError> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for item in t.report_copy.scan_prefix(b"d") {
            let (key, value) = item?;
            out.push(self.read("report_copy", &key, &value)?);
        }
        Ok(out)
    }

    /// How many deals the copy holds: their keys counted, none decoded.
    pub fn report_deal_count(&self) -> Result<usize, StoreError> {
        let t = self.trees()?;
        let mut count = 0;
        for key in t.report_copy.scan_prefix(b"d").keys() {
            key?;
            count += 1;
        }
        Ok(count)
    }

    /// Records the deals a refresh changed and how far it read, all or nothing.
    pub fn put_report_copy(&self, deals: &[ReportDeal], meta: &CopyMeta) -> Result<(), StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = deals
            .iter()
            .map(|d| Ok((deal_key(d.id), encode(d)?)))
            .collect::<Result<_, StoreError>>()?;
        let meta = encode(meta)?;
        let t = self.trees()?;
        let result = t.report_copy.transaction(|tx| {
            for (k, v) in &rows {
                tx.insert(k.as_slice(), v.as_slice())?;
            }
            tx.insert(META, meta.as_slice())?;
            Ok(())
        });
        unwrap_tx(result)
    }

    /// Replaces the whole copy by `deals` read anew (`report --refresh`), in one atomic batch:
    /// the deals of the old copy that are not among them (deleted on the portal since) go, and
    /// until the batch is applied the old copy stands whole.
    pub fn replace_report_copy(
        &self,
        deals: &[ReportDeal],
        meta: &CopyMeta,
    ) -> Result<(), StoreError> {
        let t = self.trees()?;
        let mut batch = sled::Batch::default();
        let mut kept = std::collections::BTreeSet::new();
        for deal in deals {
            let key = deal_key(deal.id);
            batch.insert(key.clone(), encode(deal)?);
            kept.insert(key);
        }
        for item in t.report_copy.scan_prefix(b"d") {
            let (key, _) = item?;
            if !kept.contains(key.as_ref()) {
                batch.remove(key);
            }
        }
        batch.insert(META, encode(meta)?);
        t.report_copy.apply_batch(batch)?;
        Ok(())
    }
}
