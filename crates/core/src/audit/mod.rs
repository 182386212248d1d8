//! Audit chain (filled in shortly).
