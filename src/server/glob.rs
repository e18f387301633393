//! Glob matching (in progress).
