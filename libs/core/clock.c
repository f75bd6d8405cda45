/*
 * clock.c: the two clocks every service uses. clock_gettime on these ids
 * cannot fail on Linux, so the functions return the value directly.
 */
#include <time.h>

#include "sw_core.h"

int64_t sw_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sw_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sw_mono_ms(void)
{
	return sw_mono_ns() / 1000000;
}
