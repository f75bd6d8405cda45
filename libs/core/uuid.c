/*
 * uuid.c: UUIDv7 as RFC 9562 section 5.7 lays it out:
 *
 *    0                   1                   2                   3
 *   |           unix_ts_ms (48 bits)            |ver|  rand_a (12)  |
 *   |var|                    rand_b (62 bits)                       |
 *
 * rand_a is a counter (RFC 9562 section 6.2, method 1): it starts at a
 * random value below 0x800 each new millisecond and counts up when calls
 * share a millisecond, so ids from one process are strictly increasing as
 * bytes. When the counter runs out, or the wall clock steps back, the
 * timestamp is carried forward from the last id instead of going back.
 */
#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "sw_core.h"

#define UUID_COUNTER_MAX 0xfff
#define UUID_COUNTER_SEED 0x7ff /* leaves >= 2048 steps per millisecond */

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;
static uint64_t uuid_last_ms;
static uint16_t uuid_counter;

static void uuid_init(void)
{
	/* -1 only when libsodium cannot set itself up; randombytes_buf still
	 * stirs its source on first use and aborts rather than return bad
	 * data, so there is nothing useful to do with the error here. */
	if (sodium_init() < 0)
		return;
}

void sw_uuid_v7(uint8_t out[16])
{
	uint64_t now_ms, ms;
	uint16_t counter, seed;
	uint8_t rnd[10];

	pthread_once(&uuid_once, uuid_init);
	randombytes_buf(rnd, sizeof(rnd));
	seed = (uint16_t)(((rnd[0] << 8) | rnd[1]) & UUID_COUNTER_SEED);
	now_ms = (uint64_t)(sw_now_us() / 1000);

	pthread_mutex_lock(&uuid_lock);
	if (now_ms > uuid_last_ms) {
		ms = now_ms;
		counter = seed;
	} else if (uuid_counter < UUID_COUNTER_MAX) {
		ms = uuid_last_ms;
		counter = uuid_counter + 1;
	} else {
		ms = uuid_last_ms + 1;
		counter = seed;
	}
	uuid_last_ms = ms;
	uuid_counter = counter;
	pthread_mutex_unlock(&uuid_lock);

	out[0] = (uint8_t)(ms >> 40);
	out[1] = (uint8_t)(ms >> 32);
	out[2] = (uint8_t)(ms >> 24);
	out[3] = (uint8_t)(ms >> 16);
	out[4] = (uint8_t)(ms >> 8);
	out[5] = (uint8_t)ms;
	out[6] = (uint8_t)(0x70 | (counter >> 8));
	out[7] = (uint8_t)counter;
	memcpy(out + 8, rnd + 2, 8);
	out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
}

void sw_uuid_derive(const uint8_t base[16], const char *label, uint8_t out[16])
{
	crypto_generichash_state st;
	uint8_t h[16];

	pthread_once(&uuid_once, uuid_init);
	/* the label's NUL is hashed: ("ab", x) and ("a", "b" x) differ */
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)label, strlen(label) + 1);
	crypto_generichash_update(&st, base, 16);
	crypto_generichash_final(&st, h, sizeof(h));
	memcpy(out, base, 6);
	memcpy(out + 6, h, 10);
	out[6] = (uint8_t)(0x70 | (out[6] & 0x0f));
	out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
}

void sw_uuid_format(const uint8_t in[16], char out[SW_UUID_STRLEN])
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[in[i] >> 4];
		out[o++] = hex[in[i] & 0x0f];
	}
	out[o] = '\0';
}

/* Accepts exactly 36 characters (either case); out is untouched on error. */
int sw_uuid_parse(const char *s, uint8_t out[16])
{
	uint8_t buf[16];
	size_t i, o = 0;
	int hi, lo;

	if (s == NULL)
		return -1;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		if ((hi = sw_hex_digit(s[i])) < 0 || (lo = sw_hex_digit(s[i + 1])) < 0)
			return -1;
		buf[o++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	if (s[36] != '\0')
		return -1;
	memcpy(out, buf, sizeof(buf));
	return 0;
}

void sw_uuid_v7_str(char out[SW_UUID_STRLEN])
{
	uint8_t id[16];

	sw_uuid_v7(id);
	sw_uuid_format(id, out);
}
