/*
 * bus_int.h: what producer.c, consumer.c and bus.c share.
 */
#ifndef SW_BUS_INT_H
#define SW_BUS_INT_H

#include <librdkafka/rdkafka.h>

#include "sw_bus.h"

/* bus.c */

/* A librdkafka configuration: bootstrap.servers, then the "name=value"
 * entries of defaults, extra and forced in that order (each may be NULL),
 * so that forced settings win over extra. NULL with errstr on a bad name
 * or value. Logging is switched off unless extra sets "debug". */
rd_kafka_conf_t *bus_conf_new(const char *bootstrap, const char *const *defaults,
			      const char *const *extra, const char *const *forced, char *errstr,
			      size_t errlen);

/* A non-blocking, close-on-exec pipe for a queue's io event. 0 or -1. */
int bus_pipe_open(int fds[2], char *errstr, size_t errlen);
/* Read everything the pipe holds (it only carries wake-ups). */
void bus_pipe_drain(int fd);
void bus_pipe_close(int fds[2]);

/* Produce with explicit key bytes; headers is owned by librdkafka on
 * success and destroyed here on failure. */
int bus_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t key_len,
		const void *value, size_t len, rd_kafka_headers_t *hdrs, void *msg_opaque,
		char *errstr, size_t errlen);

#endif
