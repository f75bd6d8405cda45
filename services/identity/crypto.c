/*
 * crypto.c: libsodium, and only libsodium.
 *
 * Values at rest (builtin backend): XChaCha20-Poly1305 (IETF) under the
 * current master key, a random nonce per row, associated data
 *
 *     tenant \0 name \0 version (decimal) \0 key_id
 *
 * so a ciphertext moved to another row (or relabelled with another key id)
 * does not open. MACs: crypto_generichash(out, 32, value, len, mac_key, 32)
 * exactly, the formula the scheduler uses on input strings.
 *
 * Memory: values are held in sodium_malloc'd buffers (guard pages, wiped
 * on free) and jansson's allocator is replaced by one that wipes what it
 * frees, so the JSON strings a value passes through (an HTTP body's
 * value_b64, a Vault answer, the plaintext of a sealed box) do not linger.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "identity.h"

/* ---- wiped jansson memory ------------------------------------------------ */

/* malloc itself, so that strings jansson returns (json_dumps) may still be
 * released with free() by the libraries; jansson's own frees wipe. */
static void wipe_free(void *p)
{
	if (p == NULL)
		return;
	sodium_memzero(p, malloc_usable_size(p));
	free(p);
}

void id_json_wipe_alloc(void)
{
	json_set_alloc_funcs(malloc, wipe_free);
}

/* ---- secure buffers ------------------------------------------------------ */

uint8_t *id_secure_dup(const void *p, size_t n)
{
	uint8_t *d;

	if (n > SIZE_MAX - 1 || (d = sodium_malloc(n + 1)) == NULL)
		return NULL;
	if (n > 0)
		memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

void id_secure_free(void *p)
{
	if (p != NULL)
		sodium_free(p);
}

char *id_b64(const uint8_t *p, size_t n)
{
	size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *out = sodium_malloc(len);

	if (out == NULL)
		return NULL;
	sodium_bin2base64(out, len, p, n, sodium_base64_VARIANT_ORIGINAL);
	return out;
}

int id_unb64(const char *s, size_t slen, size_t max, uint8_t **out, size_t *outlen)
{
	size_t cap = slen / 4 * 3 + 3, n = 0;
	const char *end = NULL;
	uint8_t *buf;
	int variant;

	/* padded or not; nothing else in between (no whitespace) */
	variant = slen % 4 == 0 ? sodium_base64_VARIANT_ORIGINAL
				: sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
	if (cap > max + 3)
		return -1;
	if ((buf = sodium_malloc(cap + 1)) == NULL)
		return -1;
	if (sodium_base642bin(buf, cap, s, slen, NULL, &n, &end, variant) != 0 ||
	    end != s + slen || n > max) {
		sodium_free(buf);
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return 0;
}

/* ---- MACs, master keys, rows --------------------------------------------- */

void id_mac(const struct id_env *env, const uint8_t *v, size_t n, uint8_t out[ID_MAC_BYTES])
{
	crypto_generichash(out, ID_MAC_BYTES, v, n, env->mac_key, ID_KEY_BYTES);
}

const struct id_mkey *id_mkey_current(const struct id_env *env)
{
	return env->nmkeys > 0 ? &env->mkeys[env->nmkeys - 1] : NULL;
}

const struct id_mkey *id_mkey_find(const struct id_env *env, const char *id)
{
	size_t i;

	for (i = 0; i < env->nmkeys; i++)
		if (strcmp(env->mkeys[i].id, id) == 0)
			return &env->mkeys[i];
	return NULL;
}

/* The associated data of a row into buf; its length, 0 when it does not fit. */
static size_t row_ad(char *buf, size_t len, const char *tenant, const char *name, int version,
		     const char *key_id)
{
	int n = snprintf(buf, len, "%s%c%s%c%d%c%s", tenant, 0, name, 0, version, 0, key_id);

	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

int id_encrypt(const struct id_mkey *k, const char *tenant, const char *name, int version,
	       const uint8_t *pt, size_t len, uint8_t nonce[24], uint8_t **ct, size_t *ctlen)
{
	char ad[512];
	size_t adlen = row_ad(ad, sizeof(ad), tenant, name, version, k->id);
	unsigned long long clen;
	uint8_t *c;

	if (adlen == 0 || (c = malloc(len + crypto_aead_xchacha20poly1305_ietf_ABYTES)) == NULL)
		return -1;
	randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, pt, len, (const uint8_t *)ad, adlen,
						   NULL, nonce, k->key);
	*ct = c;
	*ctlen = (size_t)clen;
	return 0;
}

int id_decrypt(const struct id_env *env, const char *key_id, const char *tenant, const char *name,
	       int version, const uint8_t nonce[24], const uint8_t *ct, size_t ctlen,
	       uint8_t **pt, size_t *ptlen, char *errstr, size_t errlen)
{
	const struct id_mkey *k = id_mkey_find(env, key_id);
	char ad[512];
	size_t adlen;
	unsigned long long mlen;
	uint8_t *m;

	if (k == NULL) {
		snprintf(errstr, errlen,
			 "master key %s of secret %s v%d (scope %s) is not in the master keys file",
			 key_id, name, version, tenant);
		return -1;
	}
	adlen = row_ad(ad, sizeof(ad), tenant, name, version, key_id);
	if (adlen == 0 || ctlen < crypto_aead_xchacha20poly1305_ietf_ABYTES ||
	    ctlen > ID_VALUE_MAX + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
		snprintf(errstr, errlen, "secret %s v%d (scope %s): malformed ciphertext", name,
			 version, tenant);
		return -1;
	}
	if ((m = sodium_malloc(ctlen + 1)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, ct, ctlen,
						       (const uint8_t *)ad, adlen, nonce,
						       k->key) != 0) {
		sodium_free(m);
		snprintf(errstr, errlen,
			 "secret %s v%d (scope %s) does not open under master key %s (tampered or "
			 "moved)",
			 name, version, tenant, key_id);
		return -1;
	}
	m[mlen] = '\0';
	*pt = m;
	*ptlen = (size_t)mlen;
	return 0;
}

const char *id_host_find(const struct id_env *env, const uint8_t pk[32])
{
	size_t i;

	for (i = 0; i < env->nhosts; i++)
		if (sodium_memcmp(env->hosts[i].pk, pk, 32) == 0)
			return env->hosts[i].name;
	return NULL;
}
