//! The external ring-buffer writer (filled in by the ring-core work).
