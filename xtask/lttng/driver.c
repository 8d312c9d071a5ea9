/*
 * `cargo xtask bench` LTTng-UST driver: ns/event of an enabled LTTng-UST tracepoint.
 *
 * Usage: driver EVENTS
 *
 * For each payload size (4, 16, 64 bytes) it warms up (one loop of EVENTS events, which
 * wraps a 1 MiB overwrite channel many times), then times, with clock_gettime(MONOTONIC)
 * around each loop of EVENTS iterations:
 *   empty   the same loop without the tracepoint (the payload is still produced),
 *   c_floor RDTSC + storing the 8-byte timestamp and the payload into a 1 MiB byte ring
 *           (a C cross-check of the Rust floor),
 *   lttng   the tracepoint call; LTTng-UST reads its own clock (clock_gettime MONOTONIC).
 * It prints one line per figure, `result NAME PAYLOAD NS_PER_EVENT` (lttng is reported
 * raw; xtask subtracts the empty loop), and `enabled PAYLOAD 0|1` first, so that xtask
 * refuses to report a figure for a tracepoint no session enabled.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "hyptrace_bench_tp.h"

#define RING_BYTES (1u << 20)

static uint8_t ring[RING_BYTES];

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Keeps the compiler from proving the payload constant or the loop empty. */
#define OPAQUE(p) __asm__ volatile("" : : "r"(p) : "memory")

#define LOOPS(N)                                                               \
	static double empty_##N(uint64_t events)                               \
	{                                                                      \
		uint8_t payload[N];                                            \
		memset(payload, 0x5a, N);                                      \
		double t0 = now_ns();                                          \
		for (uint64_t i = 0; i < events; i++)                          \
			OPAQUE(payload);                                       \
		return (now_ns() - t0) / (double)events;                       \
	}                                                                      \
	static double lttng_##N(uint64_t events)                               \
	{                                                                      \
		uint8_t payload[N];                                            \
		memset(payload, 0x5a, N);                                      \
		double t0 = now_ns();                                          \
		for (uint64_t i = 0; i < events; i++) {                        \
			OPAQUE(payload);                                       \
			tracepoint(hyptrace_bench, p##N, payload);             \
		}                                                              \
		return (now_ns() - t0) / (double)events;                       \
	}                                                                      \
	static double c_floor_##N(uint64_t events)                             \
	{                                                                      \
		uint8_t payload[N];                                            \
		memset(payload, 0x5a, N);                                      \
		size_t off = 0;                                                \
		double t0 = now_ns();                                          \
		for (uint64_t i = 0; i < events; i++) {                        \
			uint64_t ts = __rdtsc();                               \
			if (off + 8 + N > RING_BYTES)                          \
				off = 0;                                       \
			memcpy(ring + off, &ts, 8);                            \
			OPAQUE(payload);                                       \
			memcpy(ring + off + 8, payload, N);                    \
			off += 8 + N;                                          \
		}                                                              \
		OPAQUE(ring);                                                  \
		return (now_ns() - t0) / (double)events;                       \
	}                                                                      \
	static void run_##N(uint64_t events)                                   \
	{                                                                      \
		lttng_##N(events); /* warm-up: wraps the channel */            \
		c_floor_##N(events / 4);                                       \
		printf("result empty %d %.4f\n", N, empty_##N(events));        \
		printf("result c_floor %d %.4f\n", N, c_floor_##N(events));    \
		printf("result lttng %d %.4f\n", N, lttng_##N(events));        \
		fflush(stdout);                                                \
	}

LOOPS(4)
LOOPS(16)
LOOPS(64)

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s EVENTS\n", argv[0]);
		return 2;
	}
	uint64_t events = strtoull(argv[1], NULL, 10);
	if (events == 0)
		return 2;
	printf("enabled 4 %d\n", tracepoint_enabled(hyptrace_bench, p4) ? 1 : 0);
	printf("enabled 16 %d\n", tracepoint_enabled(hyptrace_bench, p16) ? 1 : 0);
	printf("enabled 64 %d\n", tracepoint_enabled(hyptrace_bench, p64) ? 1 : 0);
	fflush(stdout);
	run_4(events);
	run_16(events);
	run_64(events);
	return 0;
}
