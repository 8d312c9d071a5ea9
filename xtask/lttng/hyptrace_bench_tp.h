/*
 * LTTng-UST tracepoint provider for `cargo xtask bench` (docs/performance.md).
 *
 * Three events whose payload is a byte array of 4, 16 or 64 bytes, recorded with one
 * copy each (ctf_array of uint8_t), like hyptrace's writer copies a byte payload.
 */
#undef TRACEPOINT_PROVIDER
#define TRACEPOINT_PROVIDER hyptrace_bench

#undef TRACEPOINT_INCLUDE
#define TRACEPOINT_INCLUDE "./hyptrace_bench_tp.h"

#if !defined(HYPTRACE_BENCH_TP_H) || defined(TRACEPOINT_HEADER_MULTI_READ)
#define HYPTRACE_BENCH_TP_H

#include <lttng/tracepoint.h>
#include <stdint.h>

TRACEPOINT_EVENT(hyptrace_bench, p4,
	TP_ARGS(const uint8_t *, data),
	TP_FIELDS(ctf_array(uint8_t, data, data, 4)))

TRACEPOINT_EVENT(hyptrace_bench, p16,
	TP_ARGS(const uint8_t *, data),
	TP_FIELDS(ctf_array(uint8_t, data, data, 16)))

TRACEPOINT_EVENT(hyptrace_bench, p64,
	TP_ARGS(const uint8_t *, data),
	TP_FIELDS(ctf_array(uint8_t, data, data, 64)))

#endif /* HYPTRACE_BENCH_TP_H */

#include <lttng/tracepoint-event.h>
