//! A simulated Bitrix24 portal: a real HTTP server speaking Bitrix24's wire format.
