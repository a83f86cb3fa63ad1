//! The Bitrix24 REST client: envelopes and errors, `batch`, paging, the leaky bucket, retries.
