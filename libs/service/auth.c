/*
 * auth.c: the HTTP API's credentials (sw_auth.h).
 */
#include <string.h>
#include <strings.h>
#include <sodium.h>

#include "sw_auth.h"
#include "sw_core.h"

_Static_assert(SW_AUTH_HASH_BYTES == crypto_hash_sha256_BYTES, "a key hash is a SHA-256");

int sw_auth_bearer(struct evhttp_request *req, char *out, size_t outlen)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	size_t n;

	if (h == NULL)
		return 1;
	if (strncasecmp(h, "Bearer ", 7) != 0)
		return -1;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	while (n > 0 && h[n - 1] == ' ')
		n--;
	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, h, n);
	out[n] = '\0';
	return 0;
}

int sw_auth_is_admin(const char *tok, const char *admin)
{
	size_t alen = strlen(admin);

	return alen > 0 && strlen(tok) == alen && sodium_memcmp(tok, admin, alen) == 0;
}

void sw_auth_key_hash(const char *key, uint8_t hash[SW_AUTH_HASH_BYTES],
		      char literal[SW_AUTH_HASH_LITERAL])
{
	uint8_t h[SW_AUTH_HASH_BYTES];

	crypto_hash_sha256(h, (const uint8_t *)key, strlen(key));
	if (hash != NULL)
		memcpy(hash, h, sizeof(h));
	if (literal != NULL) {
		literal[0] = '\\';
		literal[1] = 'x';
		sw_hex_encode(h, sizeof(h), literal + 2);
	}
	sodium_memzero(h, sizeof(h));
}

enum sw_auth_cred sw_auth_credential(struct evhttp_request *req, const char *admin, char *tok,
				     size_t toklen)
{
	enum sw_auth_cred c = SW_AUTH_NONE;

	if (sw_auth_bearer(req, tok, toklen) == 0)
		c = sw_auth_is_admin(tok, admin) ? SW_AUTH_ADMIN : SW_AUTH_KEY;
	if (c != SW_AUTH_KEY)
		sodium_memzero(tok, toklen);
	return c;
}

int sw_auth_key_query(struct sw_store *store, const char *sql, char *key, size_t keylen,
		      sw_store_cb cb, void *opaque)
{
	char hex[SW_AUTH_HASH_LITERAL];
	const char *params[1] = {hex};
	int rc;

	sw_auth_key_hash(key, NULL, hex);
	sodium_memzero(key, keylen);
	rc = sw_store_query(store, sql, 1, params, cb, opaque);
	sodium_memzero(hex, sizeof(hex));
	return rc;
}

int sw_auth_tenant_key(struct sw_store *store, const char *columns, char *key, size_t keylen,
		       sw_store_cb cb, void *opaque)
{
	char sql[512];

	if ((size_t)snprintf(
		sql, sizeof(sql),
		"SELECT %s FROM apikeys k LEFT JOIN tenants t ON t.id = k.tenant_id"
		" WHERE k.key_hash = $1::bytea AND NOT k.revoked AND k.role = 'TENANT'"
		" AND k.tenant_id <> '' AND NOT coalesce(t.deleted, false)",
		columns) >= sizeof(sql)) {
		sodium_memzero(key, keylen);
		return -1;
	}
	return sw_auth_key_query(store, sql, key, keylen, cb, opaque);
}
