//! `ring_buffer_pack` / `trace_buffer_pack` layouts and their safe iterator (filled in by the
//! ring-core work).
