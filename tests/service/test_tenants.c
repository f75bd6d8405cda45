/*
 * test_tenants.c: sw_tenants_stmt, the statement each service that learns
 * tenants from sagewai.tenants applies: the scheduler's events only, each
 * type to its upsert, anything malformed ignored, users only where kept.
 */
#include <string.h>

#include "sw_test.h"
#include "sw_tenants.h"

#define HASH "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static json_t *ev(const char *type, const char *producer, const char *fields)
{
	char text[1024];
	json_t *j;

	snprintf(text, sizeof(text),
		 "{\"header\": {\"type\": \"%s\", \"producer\": \"%s\"}%s%s}", type, producer,
		 fields[0] ? ", " : "", fields);
	j = json_loads(text, 0, NULL);
	SW_CHECKF(j != NULL, "bad test JSON %s", text);
	return j;
}

static enum sw_tenants_rc rc_of(const char *type, const char *producer, const char *fields,
				int users, struct sw_tenants_stmt *st, json_t **keep)
{
	*keep = ev(type, producer, fields);
	return sw_tenants_stmt(*keep, users, st);
}

int main(void)
{
	struct sw_tenants_stmt st;
	json_t *j;

	/* another producer, or no tenant: foreign */
	SW_CHECK(rc_of("tenant.created", "sagewai-identity", "\"tenant_id\": \"t1\", \"name\": \"a\"",
		       1, &st, &j) == SW_TENANTS_FOREIGN);
	json_decref(j);
	SW_CHECK(rc_of("tenant.created", "sagewai-scheduler", "\"name\": \"a\"", 1, &st, &j) ==
		 SW_TENANTS_FOREIGN);
	json_decref(j);

	/* tenant.created: an upsert of the name, keyed by the tenant */
	SW_CHECK(rc_of("tenant.created", "sagewai-scheduler", "\"tenant_id\": \"t1\", \"name\": \"a\"",
		       0, &st, &j) == SW_TENANTS_APPLY);
	SW_CHECK(st.nparams == 2 && !strcmp(st.params[0], "t1") && !strcmp(st.params[1], "a") &&
		 !strcmp(st.tenant, "t1") && strstr(st.sql, "INSERT INTO tenants") != NULL);
	json_decref(j);

	/* apikey.created: the hash as bytea; a short or non-hex hash is malformed */
	SW_CHECK(rc_of("apikey.created", "sagewai-scheduler",
		       "\"tenant_id\": \"t1\", \"key_id\": \"k\", \"role\": \"TENANT\","
		       " \"key_sha256\": \"" HASH "\", \"user\": \"ann\"",
		       0, &st, &j) == SW_TENANTS_APPLY);
	SW_CHECK(st.nparams == 5 && !strcmp(st.params[1], "\\x" HASH) &&
		 !strcmp(st.params[4], "ann"));
	json_decref(j);
	SW_CHECK(rc_of("apikey.created", "sagewai-scheduler",
		       "\"tenant_id\": \"t1\", \"key_id\": \"k\", \"role\": \"TENANT\","
		       " \"key_sha256\": \"00zz\"",
		       0, &st, &j) == SW_TENANTS_MALFORMED);
	json_decref(j);
	SW_CHECK(rc_of("apikey.created", "sagewai-scheduler",
		       "\"tenant_id\": \"t1\", \"key_id\": \"k\", \"role\": \"TENANT\","
		       " \"key_sha256\": \"" HASH "'; DROP TABLE apikeys; --\"",
		       0, &st, &j) == SW_TENANTS_MALFORMED);
	json_decref(j);

	/* revoked: sticky upsert */
	SW_CHECK(rc_of("apikey.revoked", "sagewai-scheduler", "\"tenant_id\": \"t1\", \"key_id\": \"k\"",
		       0, &st, &j) == SW_TENANTS_APPLY);
	SW_CHECK(strstr(st.sql, "revoked = true") != NULL);
	json_decref(j);

	/* users: applied where kept, nothing to do elsewhere */
	SW_CHECK(rc_of("user.created", "sagewai-scheduler",
		       "\"tenant_id\": \"t1\", \"user_id\": \"u\", \"name\": \"ann\"", 1, &st,
		       &j) == SW_TENANTS_APPLY);
	SW_CHECK(st.nparams == 3 && strstr(st.sql, "INSERT INTO users") != NULL);
	json_decref(j);
	SW_CHECK(rc_of("user.deleted", "sagewai-scheduler",
		       "\"tenant_id\": \"t1\", \"user_id\": \"u\", \"name\": \"ann\"", 0, &st,
		       &j) == SW_TENANTS_NOTHING);
	json_decref(j);

	/* unknown type */
	SW_CHECK(rc_of("tenant.renamed", "sagewai-scheduler", "\"tenant_id\": \"t1\"", 1, &st, &j) ==
		 SW_TENANTS_MALFORMED);
	json_decref(j);
	printf("tenants: ok\n");
	return 0;
}
