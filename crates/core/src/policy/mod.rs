//! Policy (filled in shortly).
