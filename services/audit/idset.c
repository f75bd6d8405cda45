/*
 * A set of event ids (one generation of the dedupe window, dedupe.c).
 * Open addressing with linear probing on the id's own bytes (UUIDv7 random
 * bits, or a BLAKE2b digest for raw records), doubled at 50% load. 16
 * bytes per slot.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sodium.h>

#include "audit.h"

static const uint8_t zero_id[16];

static size_t slot_of(const struct audit_idset *s, const uint8_t id[16])
{
	uint64_t h;

	/* bytes 8..15 hold the random part of a UUIDv7 */
	memcpy(&h, id + 8, sizeof(h));
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return (size_t)h & (s->cap - 1);
}

/* The slots are a private anonymous mapping, not malloc's: zero pages
 * that cost memory only once written, and given back to the system when
 * a generation of the window is dropped (a large free() may stay in the
 * heap once malloc raised its mmap threshold). */
int audit_idset_init(struct audit_idset *s, size_t cap)
{
	size_t c = 1024;
	void *p;

	while (c < cap * 2)
		c <<= 1;
	p = mmap(NULL, c * 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	s->slots = p;
	s->cap = c;
	s->len = 0;
	return 0;
}

void audit_idset_free(struct audit_idset *s)
{
	if (s->slots != NULL)
		munmap(s->slots, s->cap * 16);
	s->slots = NULL;
	s->cap = s->len = 0;
}

static int grow(struct audit_idset *s)
{
	struct audit_idset n;
	size_t i;

	if (audit_idset_init(&n, s->cap) == -1)
		return -1;
	for (i = 0; i < s->cap; i++)
		if (memcmp(s->slots[i], zero_id, 16) != 0)
			(void)audit_idset_add(&n, s->slots[i]);
	audit_idset_free(s);
	*s = n;
	return 0;
}

int audit_idset_add(struct audit_idset *s, const uint8_t id[16])
{
	uint8_t key[16];
	size_t i;

	/* the all-zero id marks an empty slot; map it to a fixed other value */
	memcpy(key, id, 16);
	if (memcmp(key, zero_id, 16) == 0)
		key[15] = 1;
	if ((s->len + 1) * 2 > s->cap && grow(s) == -1)
		return -1;
	for (i = slot_of(s, key);; i = (i + 1) & (s->cap - 1)) {
		if (memcmp(s->slots[i], zero_id, 16) == 0) {
			memcpy(s->slots[i], key, 16);
			s->len++;
			return 1;
		}
		if (memcmp(s->slots[i], key, 16) == 0)
			return 0;
	}
}

int audit_idset_has(const struct audit_idset *s, const uint8_t id[16])
{
	uint8_t key[16];
	size_t i;

	if (s->cap == 0)
		return 0;
	memcpy(key, id, 16);
	if (memcmp(key, zero_id, 16) == 0)
		key[15] = 1;
	for (i = slot_of(s, key);; i = (i + 1) & (s->cap - 1)) {
		if (memcmp(s->slots[i], zero_id, 16) == 0)
			return 0;
		if (memcmp(s->slots[i], key, 16) == 0)
			return 1;
	}
}

void audit_raw_id(const char *topic, size_t topic_len, int32_t partition, int64_t offset,
		  uint8_t out[16])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 16);
	crypto_generichash_update(&st, (const unsigned char *)"sagewai-raw", 12);
	crypto_generichash_update(&st, (const unsigned char *)topic, topic_len);
	crypto_generichash_update(&st, (const unsigned char *)&partition, sizeof(partition));
	crypto_generichash_update(&st, (const unsigned char *)&offset, sizeof(offset));
	crypto_generichash_final(&st, out, 16);
}
