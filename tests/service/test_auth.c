/*
 * test_auth.c: sw_auth, the HTTP API's credentials as every service reads
 * them: the Bearer value (scheme in any case, blanks around the value
 * dropped, absent told from malformed, too long refused), the admin token
 * only when set and equal, the value wiped unless it is a key to look up,
 * and a key's SHA-256 as the bytea literal the apikeys tables are searched
 * by.
 */
#include <string.h>
#include <event2/http.h>

#include "sw_auth.h"
#include "sw_test.h"

static struct evhttp_request *req_with(const char *authorization)
{
	struct evhttp_request *req = evhttp_request_new(NULL, NULL);

	SW_CHECK(req != NULL);
	if (authorization != NULL)
		SW_CHECK(evhttp_add_header(evhttp_request_get_input_headers(req), "Authorization",
					   authorization) == 0);
	return req;
}

static int bearer_of(const char *authorization, char *out, size_t outlen)
{
	struct evhttp_request *req = req_with(authorization);
	int rc = sw_auth_bearer(req, out, outlen);

	evhttp_request_free(req);
	return rc;
}

static enum sw_auth_cred cred_of(const char *authorization, const char *admin, char *tok,
				 size_t toklen)
{
	struct evhttp_request *req = req_with(authorization);
	enum sw_auth_cred c;

	memset(tok, 'x', toklen);
	c = sw_auth_credential(req, admin, tok, toklen);
	evhttp_request_free(req);
	return c;
}

static int wiped(const char *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (buf[i] != '\0')
			return 0;
	return 1;
}

int main(void)
{
	char out[16], lit[SW_AUTH_HASH_LITERAL];
	uint8_t hash[SW_AUTH_HASH_BYTES];

	/* the value, the scheme in any case, blanks around it dropped */
	SW_CHECK(bearer_of("Bearer abc", out, sizeof(out)) == 0 && !strcmp(out, "abc"));
	SW_CHECK(bearer_of("bEaReR   abc  ", out, sizeof(out)) == 0 && !strcmp(out, "abc"));
	/* absent is told from malformed */
	SW_CHECK(bearer_of(NULL, out, sizeof(out)) == 1);
	SW_CHECK(bearer_of("Basic abc", out, sizeof(out)) == -1);
	SW_CHECK(bearer_of("Bearer", out, sizeof(out)) == -1);
	SW_CHECK(bearer_of("Bearer    ", out, sizeof(out)) == -1);
	/* the longest value that fits, and one more refused */
	SW_CHECK(bearer_of("Bearer 123456789012345", out, sizeof(out)) == 0 && strlen(out) == 15);
	SW_CHECK(bearer_of("Bearer 1234567890123456", out, sizeof(out)) == -1);

	/* the admin token: set and equal, nothing shorter, longer or empty */
	SW_CHECK(sw_auth_is_admin("s3cret", "s3cret"));
	SW_CHECK(!sw_auth_is_admin("s3cre", "s3cret"));
	SW_CHECK(!sw_auth_is_admin("s3crett", "s3cret"));
	SW_CHECK(!sw_auth_is_admin("s3creT", "s3cret"));
	SW_CHECK(!sw_auth_is_admin("", ""));
	SW_CHECK(!sw_auth_is_admin("anything", ""));

	/* the credential: admin and none wipe the buffer, a key stays */
	SW_CHECK(cred_of("Bearer s3cret", "s3cret", out, sizeof(out)) == SW_AUTH_ADMIN);
	SW_CHECK(wiped(out, sizeof(out)));
	SW_CHECK(cred_of("Bearer swk_key", "s3cret", out, sizeof(out)) == SW_AUTH_KEY);
	SW_CHECK(!strcmp(out, "swk_key"));
	SW_CHECK(cred_of("Bearer swk_key", "", out, sizeof(out)) == SW_AUTH_KEY);
	SW_CHECK(cred_of("Token s3cret", "s3cret", out, sizeof(out)) == SW_AUTH_NONE);
	SW_CHECK(wiped(out, sizeof(out)));
	SW_CHECK(cred_of(NULL, "s3cret", out, sizeof(out)) == SW_AUTH_NONE);
	SW_CHECK(wiped(out, sizeof(out)));

	/* SHA-256("abc") (FIPS 180-2), raw and as a bytea literal */
	sw_auth_key_hash("abc", hash, lit);
	SW_CHECK(
	    !strcmp(lit, "\\xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	SW_CHECK(hash[0] == 0xba && hash[31] == 0xad);
	memset(lit, 0, sizeof(lit));
	sw_auth_key_hash("abc", NULL, lit);
	SW_CHECK(lit[0] == '\\' && lit[1] == 'x' && strlen(lit) == sizeof(lit) - 1);
	printf("auth: ok\n");
	return 0;
}
