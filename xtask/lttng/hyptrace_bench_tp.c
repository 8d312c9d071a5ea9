/* The probes of hyptrace_bench_tp.h, linked into the driver (see driver.c). */
#define TRACEPOINT_CREATE_PROBES
#define TRACEPOINT_DEFINE
#include "hyptrace_bench_tp.h"
