//! Command parsing (in progress).
