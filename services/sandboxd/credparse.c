/*
 * credparse.c: a CRED_REQUEST frame's payload from a tool runner, checked
 * (docs/JIT.md). The runner is inside the sandbox: whatever runs there may
 * have taken it over, so every field is checked here again. Compiled into
 * sandboxd and into the fuzz target tests/fuzz/fuzz_credreq.c.
 */
#include <string.h>

#include "credparse.h"
#include "sw_credsock.h"
#include "sw_frame.h"

int sbd_cred_parse(const void *p, size_t n, struct sbd_cred_req *req, char *err, size_t errlen)
{
	const char *name, *scope, *reason, *requester;
	size_t nl, sl, rl, ql;
	json_int_t id, timeout;
	json_error_t jerr;
	json_t *o;
	int rc = -1;

	memset(req, 0, sizeof(*req));
	if (n == 0 || n > SW_FRAME_CRED_REQUEST_MAX) {
		snprintf(err, errlen, "a credential request is 1..%d bytes, not %zu",
			 SW_FRAME_CRED_REQUEST_MAX, n);
		return -1;
	}
	if ((o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(err, errlen, "a credential request is not JSON");
		return -1;
	}
	/* a best effort for the refusal's address, before the strict check */
	if (json_is_integer(json_object_get(o, "id")) &&
	    json_integer_value(json_object_get(o, "id")) > 0 &&
	    json_integer_value(json_object_get(o, "id")) <= UINT32_MAX)
		req->id = (uint32_t)json_integer_value(json_object_get(o, "id"));
	if (json_unpack_ex(o, &jerr, JSON_STRICT, "{s:I, s:s%, s:s%, s:s%, s:I, s:s%}", "id", &id,
			   "name", &name, &nl, "scope", &scope, &sl, "reason", &reason, &rl,
			   "timeout_ms", &timeout, "requester", &requester, &ql) != 0) {
		snprintf(err, errlen,
			 "a credential request is {id, name, scope, reason, "
			 "timeout_ms, requester}");
		goto out;
	}
	if (id < 1 || id > UINT32_MAX) {
		snprintf(err, errlen, "id is 1..4294967295");
		goto out;
	}
	if (!sw_credsock_name_ok(name, nl)) {
		snprintf(err, errlen, "name is not [A-Z_][A-Z0-9_]{0,127}");
		goto out;
	}
	if (sl > SW_CREDSOCK_SCOPE_MAX || !sw_credsock_text_ok(scope, sl) ||
	    rl > SW_CREDSOCK_REASON_MAX || !sw_credsock_text_ok(reason, rl) ||
	    ql > SBD_CRED_REQUESTER_MAX || !sw_credsock_text_ok(requester, ql)) {
		snprintf(err, errlen,
			 "scope (<= %d bytes), reason (<= %d) and requester (<= %d) "
			 "are printable text",
			 SW_CREDSOCK_SCOPE_MAX, SW_CREDSOCK_REASON_MAX, SBD_CRED_REQUESTER_MAX);
		goto out;
	}
	if (timeout < 1 || timeout > SW_CREDSOCK_TIMEOUT_MAX) {
		snprintf(err, errlen, "timeout_ms is 1..%d", SW_CREDSOCK_TIMEOUT_MAX);
		goto out;
	}
	req->id = (uint32_t)id;
	memcpy(req->name, name, nl + 1);
	memcpy(req->scope, scope, sl + 1);
	memcpy(req->reason, reason, rl + 1);
	memcpy(req->requester, requester, ql + 1);
	req->timeout_ms = (uint32_t)timeout;
	rc = 0;
out:
	json_decref(o);
	return rc;
}
