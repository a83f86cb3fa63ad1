//! The rule language: loading (every error at once, with file:line:col) and pure evaluation.
