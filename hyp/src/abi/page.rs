//! Ring-buffer page layout: ftrace page header, footer and flags (filled in by the ring-core work).
