/*
 * bus.c: topic names, client configuration, wake-up pipes and message
 * headers shared by the producer and the consumer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus_int.h"

const char *const sw_bus_topics[] = {
    SW_TOPIC_RUNS,
    SW_TOPIC_STEPS,
    SW_TOPIC_STEPS_WORKER,
    SW_TOPIC_STEPS_SANDBOX,
    SW_TOPIC_IDENTITY,
    SW_TOPIC_IDENTITY_SEALED,
    SW_TOPIC_IDENTITY_REPLIES,
    SW_TOPIC_SANDBOX,
    SW_TOPIC_CREDENTIALS,
    SW_TOPIC_AUDIT_CHECKPOINTS,
    SW_TOPIC_DEADLETTER,
    SW_TOPIC_TENANTS,
    NULL,
};

const char *sw_bus_dispatch_topic(const char *mode)
{
	return strcmp(mode, "in_process") == 0 ? SW_TOPIC_STEPS_WORKER : SW_TOPIC_STEPS_SANDBOX;
}

/* Apply "name=value" entries; 0 or -1 with errstr. */
static int conf_apply(rd_kafka_conf_t *conf, const char *const *kv, char *errstr, size_t errlen)
{
	char name[256], rkerr[256];
	const char *eq;
	size_t n;

	for (; kv != NULL && *kv != NULL; kv++) {
		eq = strchr(*kv, '=');
		n = eq != NULL ? (size_t)(eq - *kv) : 0;
		if (n == 0 || n >= sizeof(name)) {
			snprintf(errstr, errlen, "bad client property \"%s\": want name=value",
				 *kv);
			return -1;
		}
		memcpy(name, *kv, n);
		name[n] = '\0';
		if (rd_kafka_conf_set(conf, name, eq + 1, rkerr, sizeof(rkerr)) !=
		    RD_KAFKA_CONF_OK) {
			snprintf(errstr, errlen, "client property %s: %s", name, rkerr);
			return -1;
		}
	}
	return 0;
}

static int conf_has(const char *const *kv, const char *name)
{
	size_t n = strlen(name);

	for (; kv != NULL && *kv != NULL; kv++)
		if (strncmp(*kv, name, n) == 0 && (*kv)[n] == '=')
			return 1;
	return 0;
}

rd_kafka_conf_t *bus_conf_new(const char *bootstrap, const char *const *defaults,
			      const char *const *extra, const char *const *forced, char *errstr,
			      size_t errlen)
{
	rd_kafka_conf_t *conf;
	char rkerr[256];

	if (bootstrap == NULL || *bootstrap == '\0') {
		snprintf(errstr, errlen, "no Kafka bootstrap servers given");
		return NULL;
	}
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, rkerr, sizeof(rkerr)) !=
	    RD_KAFKA_CONF_OK) {
		snprintf(errstr, errlen, "bootstrap.servers: %s", rkerr);
		goto fail;
	}
	if (conf_apply(conf, defaults, errstr, errlen) == -1 ||
	    conf_apply(conf, extra, errstr, errlen) == -1 ||
	    conf_apply(conf, forced, errstr, errlen) == -1)
		goto fail;
	/* A library never writes to stderr unless asked for debugging. */
	if (!conf_has(extra, "debug"))
		rd_kafka_conf_set_log_cb(conf, NULL);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

int bus_pipe_open(int fds[2], char *errstr, size_t errlen)
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
		snprintf(errstr, errlen, "pipe: %s", strerror(errno));
		fds[0] = fds[1] = -1;
		return -1;
	}
	return 0;
}

void bus_pipe_drain(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

void bus_pipe_close(int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	fds[0] = fds[1] = -1;
}

int bus_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t key_len,
		const void *value, size_t len, rd_kafka_headers_t *hdrs, void *msg_opaque,
		char *errstr, size_t errlen)
{
	rd_kafka_resp_err_t err;

	if (topic == NULL || (value == NULL && len > 0) || (key == NULL && key_len > 0)) {
		snprintf(errstr, errlen, "produce: bad arguments");
		goto fail;
	}
	err = rd_kafka_producev(
	    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
	    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errlen, "produce to %s: %s", topic, rd_kafka_err2str(err));
		goto fail;
	}
	return 0;
fail:
	if (hdrs != NULL)
		rd_kafka_headers_destroy(hdrs);
	return -1;
}

const void *sw_bus_msg_header(const struct sw_bus_msg *m, const char *name, size_t *len)
{
	rd_kafka_headers_t *hdrs;
	const void *val;
	size_t size;

	*len = 0;
	if (m == NULL || m->rk_msg == NULL || name == NULL)
		return NULL;
	if (rd_kafka_message_headers(m->rk_msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	if (rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	*len = size;
	return val;
}
