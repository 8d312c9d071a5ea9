//! The host's view of a ring buffer: page and event decoding, consuming reads (filled in by the
//! ring-core work).
