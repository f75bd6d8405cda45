/*
 * alog_cmd.c: verify and export as both command lines run them
 * (sagewai-audit and sagewai audit); the tools parse their arguments and
 * print. See sw_alog_pub.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "alog_int.h"
#include "sw_alog_pub.h"
#include "sw_bus.h"


static char *dump_json(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return s;
}

static int verify_bundle(const struct sw_alog_verify_cmd *c, struct sw_event_registry *reg,
			 const struct sw_alog_keys *keys, char **report, char *errstr,
			 size_t errlen)
{
	struct sw_alog_bundle_result r;
	json_error_t je;
	json_t *b;
	char line[600];

	if ((b = json_load_file(c->bundle, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		alog_err(errstr, errlen, "%s: not JSON: %s (line %d)", c->bundle, je.text, je.line);
		return 2;
	}
	if (sw_alog_bundle_check(b, reg, keys, &r, errstr, errlen) != 0) {
		json_decref(b);
		return 2;
	}
	json_decref(b);
	if (c->json) {
		*report = dump_json(sw_alog_bundle_report_json(&r));
	} else {
		sw_alog_bundle_report_text(&r, line, sizeof(line));
		*report = strdup(line);
	}
	if (*report == NULL) {
		alog_err(errstr, errlen, "out of memory");
		return 2;
	}
	return r.ok ? 0 : 1;
}

int sw_alog_verify_run(const struct sw_alog_verify_cmd *c, char **report, char *errstr,
		       size_t errlen)
{
	struct sw_alog_pubset pub = {0};
	struct sw_alog_check_opts o = {0};
	struct sw_alog_check_result r;
	struct sw_event_registry *reg = NULL;
	struct sw_alog_keys *keys = NULL;
	char line[900], e[300];
	int ret = 2;

	*report = NULL;
	if ((c->dir == NULL) == (c->bundle == NULL) || (c->checkpoints && c->kafka) ||
	    (c->bundle && (c->checkpoints || c->kafka || c->log_id))) {
		alog_err(errstr, errlen,
			 "give a log directory or --bundle FILE; published checkpoints (one "
			 "source) and --log-id go with a directory");
		return 2;
	}
	if (c->pubkeys != NULL && (keys = sw_alog_keys_load(c->pubkeys, errstr, errlen)) == NULL)
		return 2;
	if ((reg = sw_events_registry_new(errstr, errlen)) == NULL)
		goto out;
	if (c->bundle != NULL) {
		ret = verify_bundle(c, reg, keys, report, errstr, errlen);
		goto out;
	}
	if (c->checkpoints != NULL &&
	    sw_alog_pub_read_file(reg, c->checkpoints, &pub, errstr, errlen) != 0)
		goto out;
	if (c->kafka != NULL) {
		if (sw_alog_pub_read_kafka(reg, c->kafka, c->timeout_ms > 0 ? c->timeout_ms : 30000,
					   &pub, e, sizeof(e)) != 0) {
			alog_err(errstr, errlen, "reading %s from %s: %s",
				 SW_TOPIC_AUDIT_CHECKPOINTS, c->kafka, e);
			goto out;
		}
	}
	o.keys = keys;
	o.published = pub.v;
	o.npublished = pub.n;
	o.log_id = c->log_id;
	if (sw_alog_check(c->dir, &o, &r, errstr, errlen) != 0)
		goto out;
	if (c->json) {
		json_t *j = sw_alog_report_json(&r);

		if (j != NULL && (c->checkpoints || c->kafka)) {
			json_object_set_new(j, "published_read", json_integer((json_int_t)pub.n));
			json_object_set_new(j, "published_unreadable",
					    json_integer((json_int_t)pub.unreadable));
		}
		*report = dump_json(j);
	} else {
		sw_alog_report_text(&r, line, sizeof(line));
		if (pub.unreadable > 0) {
			size_t n = strlen(line);

			snprintf(line + n, sizeof(line) - n,
				 " (%zu messages on %s were no checkpoint at all)", pub.unreadable,
				 SW_TOPIC_AUDIT_CHECKPOINTS);
		}
		*report = strdup(line);
	}
	if (*report == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto out;
	}
	ret = r.v.ok ? 0 : 1;
out:
	sw_alog_pubset_free(&pub);
	sw_alog_keys_destroy(keys);
	sw_events_registry_destroy(reg);
	return ret;
}

int sw_alog_export_run(const char *dir, const char *run_id, const char *pubkeys,
		       const char *out_path, int wait_ms, size_t *records, char **text,
		       char *errstr, size_t errlen)
{
	struct sw_event_registry *reg = NULL;
	struct sw_alog_keys *keys = NULL;
	json_t *b = NULL;
	char *s = NULL;
	int uncovered = 0, waited = 0, ret = -1, fd = -1;

	*records = 0;
	*text = NULL;
	if (pubkeys == NULL) {
		alog_err(errstr, errlen,
			 "the public keys are needed (they go into the bundle): --pubkeys FILE or "
			 "SAGEWAI_AUDIT_PUBKEYS");
		return -1;
	}
	if ((keys = sw_alog_keys_load(pubkeys, errstr, errlen)) == NULL ||
	    (reg = sw_events_registry_new(errstr, errlen)) == NULL)
		goto out;
	for (;;) {
		b = sw_alog_bundle_build(dir, run_id, reg, keys, &uncovered, errstr, errlen);
		if (b != NULL || !uncovered || waited >= wait_ms)
			break;
		usleep(200000); /* the service checkpoints at least twice a second */
		waited += 200;
	}
	if (b == NULL)
		goto out;
	*records = json_array_size(json_object_get(b, "records"));
	if ((s = json_dumps(b, JSON_INDENT(1))) == NULL) {
		alog_err(errstr, errlen, "out of memory");
		goto out;
	}
	if (strcmp(out_path, "-") == 0) {
		*text = s;
		s = NULL;
		ret = 0;
		goto out;
	}
	if ((fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0 ||
	    alog_write_all(fd, s, strlen(s)) != 0 || alog_write_all(fd, "\n", 1) != 0 ||
	    fsync(fd) != 0) {
		alog_err(errstr, errlen, "%s: %s", out_path, strerror(errno));
		if (fd >= 0)
			unlink(out_path);
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(s);
	json_decref(b);
	sw_alog_keys_destroy(keys);
	sw_events_registry_destroy(reg);
	return ret;
}
