/*
 * service_svcbus_*: sw_svcbus's caps on what a service holds, run by the
 * daemon frame against librdkafka's mock cluster, one case per process:
 *
 *   bytes   max_bytes 1,000 (max_inflight 1,000): messages of 100 bytes
 *           held (their effects pending) pause the consumer on their bytes
 *           alone, once ten or more are in hand; 20 more produced meanwhile
 *           are not taken while those are held; released, the consumer
 *           resumes and takes the rest; the pause is counted once in
 *           sagewai_<svc>_consumer_pauses_total
 *   count   the same with max_inflight 10 and no byte cap
 *   none    caps far above: the second 20 are taken while the first are
 *           still held, and nothing pauses (the control: the cases above
 *           fail if the caps do not act)
 *
 * Every message is taken exactly once, in every case.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sw_http.h"
#include "sw_service.h"
#include "sw_svcbus.h"
#include "sw_test.h"

#define WAVE 20
#define MSG_BYTES 100
#define HOLD_MAX (2 * WAVE)

static const char *const topics[] = {"t.svcbus", NULL};

struct app {
	struct sw_service *svc;
	struct sw_svcbus bus;
	struct sw_svcbus_def def;
	rd_kafka_t *mk; /* the test's messages, to the mock cluster */
	struct event *tick;
	struct sw_svcbus_item *held[HOLD_MAX];
	size_t nheld;
	int hold;			   /* keep each item's effect pending */
	int seen[2 * WAVE];		   /* times each message (by offset) was taken */
	int phase, ticks_still;		   /* the test's steps (tick_cb) */
	size_t taken, taken_before;	   /* messages handled */
	size_t held_at_pause, after_wave2; /* what the checks compare */
	int paused_at_check;
	char metrics[8192];
};

static void produce(struct app *a, int from)
{
	char value[MSG_BYTES];
	int i;

	for (i = from; i < from + WAVE; i++) {
		memset(value, 'a' + i % 26, sizeof(value));
		SW_CHECK(rd_kafka_producev(a->mk, RD_KAFKA_V_TOPIC(topics[0]),
					   RD_KAFKA_V_VALUE(value, sizeof(value)),
					   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
	}
	SW_CHECK(rd_kafka_flush(a->mk, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void handle(void *arg, struct sw_svcbus_item *it, const struct sw_bus_msg *m)
{
	struct app *a = arg;

	SW_CHECKF(m->offset >= 0 && m->offset < 2 * WAVE, "offset %lld", (long long)m->offset);
	if (m->offset >= 0 && m->offset < 2 * WAVE)
		a->seen[m->offset]++;
	SW_CHECK(m->len == MSG_BYTES);
	a->taken++;
	if (a->hold && a->nheld < HOLD_MAX) {
		it->pending++; /* an effect not yet durable */
		a->held[a->nheld++] = it;
	}
}

static void release_all(struct app *a)
{
	size_t i, n = a->nheld;

	a->hold = 0;
	a->nheld = 0;
	for (i = 0; i < n; i++)
		sw_svcbus_release(a->held[i]); /* may settle and free it */
}

/* Every 100 ms: wait for the first wave to be taken and nothing more to
 * come for a second, check, produce the second wave, wait a second more,
 * check, release, wait for the second wave, stop. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct app *a = arg;
	struct timeval tv = {0, 100000};
	char *text;

	(void)fd;
	(void)what;
	if (a->taken == a->taken_before)
		a->ticks_still++;
	else
		a->ticks_still = 0;
	a->taken_before = a->taken;
	switch (a->phase) {
	case 0: /* the first wave in hand, or as much as the caps let in */
		if (a->taken > 0 && a->ticks_still >= 10) {
			a->held_at_pause = a->taken;
			a->paused_at_check = a->bus.paused;
			produce(a, WAVE);
			a->ticks_still = 0;
			a->phase = 1;
		}
		break;
	case 1: /* the second wave produced: taken or not, a second later */
		if (a->ticks_still >= 10) {
			a->after_wave2 = a->taken;
			release_all(a);
			a->phase = 2;
		}
		break;
	case 2:
		if (a->taken >= 2 * WAVE && sw_svcbus_idle(&a->bus)) {
			text = sw_metrics_render(sw_service_metrics(a->svc));
			snprintf(a->metrics, sizeof(a->metrics), "%s", text ? text : "");
			free(text);
			a->phase = 3;
			raise(SIGTERM);
			return;
		}
		break;
	default:
		return;
	}
	evtimer_add(a->tick, &tv);
}

static int app_start(struct sw_service *svc, void *arg, char *err, size_t errlen)
{
	struct app *a = arg;
	struct timeval tv = {0, 100000};

	a->svc = svc;
	if (sw_svcbus_start(&a->bus, svc, NULL, &a->def, a, err, errlen) == -1)
		return -1;
	a->tick = evtimer_new(sw_service_base(svc), tick_cb, a);
	return a->tick != NULL && evtimer_add(a->tick, &tv) == 0 ? 0 : -1;
}

static void app_drain(struct sw_service *svc, void *arg)
{
	(void)svc;
	sw_svcbus_pause(&((struct app *)arg)->bus);
}

static void app_stop(struct sw_service *svc, void *arg)
{
	struct app *a = arg;

	(void)svc;
	release_all(a);
	sw_svcbus_close(&a->bus);
	sw_svcbus_free(&a->bus);
	if (a->tick != NULL)
		event_free(a->tick);
}

static const struct sw_service_def def = {
    .name = "svcbustest",
    .help = "sw_svcbus's caps, for its test.\n",
    .drain_ms = 5000,
    .start = app_start,
    .drain = app_drain,
    .stop = app_stop,
};

int main(int argc, char **argv)
{
	static struct app a;
	const char *which = argc > 1 ? argv[1] : "bytes";
	char *sargv[] = {"sagewai-svcbustest", "serve", NULL};
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_t *owner;
	char err[256], group[64];
	int i, rc;

	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	SW_CHECKF(owner != NULL, "%s", err);
	SW_CHECKF((mc = rd_kafka_mock_cluster_new(owner, 1)) != NULL, "mock cluster");
	SW_CHECKF(rd_kafka_mock_topic_create(mc, topics[0], 1, 1) == 0, "topic");
	conf = rd_kafka_conf_new();
	SW_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc),
				   err, sizeof(err)) == RD_KAFKA_CONF_OK);
	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	a.mk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	SW_CHECKF(a.mk != NULL, "%s", err);
	setenv("SAGEWAI_KAFKA_BOOTSTRAP", rd_kafka_mock_cluster_bootstraps(mc), 1);
	setenv("SAGEWAI_KAFKA_CONSUMER_CONFIG",
	       "session.timeout.ms=6000,heartbeat.interval.ms=500", 1);
	if (getenv("SW_TEST_VERBOSE") == NULL)
		setenv("SAGEWAI_LOG_LEVEL", "warn", 1);

	snprintf(group, sizeof(group), "svcbus-%s", which);
	a.def.client_id = "sagewai-svcbustest";
	a.def.group = group;
	a.def.topics = topics;
	a.def.item_size = sizeof(struct sw_svcbus_item);
	a.def.handle = handle;
	if (strcmp(which, "bytes") == 0) {
		a.def.max_inflight = 1000;
		a.def.max_bytes = 10 * MSG_BYTES;
	} else if (strcmp(which, "count") == 0) {
		a.def.max_inflight = 10;
		a.def.max_bytes = 0;
	} else if (strcmp(which, "none") == 0) {
		a.def.max_inflight = 1000;
		a.def.max_bytes = 1000 * MSG_BYTES;
	} else {
		fprintf(stderr, "unknown case %s\n", which);
		return 2;
	}
	a.hold = 1;
	produce(&a, 0);

	rc = sw_service_main(&def, &a, 2, sargv);
	SW_CHECKF(rc == 0, "the service exited %d", rc);
	SW_CHECKF(a.phase == 3, "the test stopped in phase %d", a.phase);
	fprintf(stderr, "%s: %zu taken at the check, %zu a second after the second wave\n", which,
		a.held_at_pause, a.after_wave2);
	if (strcmp(which, "none") == 0) {
		SW_CHECKF(a.held_at_pause == WAVE, "%zu of the first %d taken", a.held_at_pause,
			  WAVE);
		SW_CHECKF(!a.paused_at_check, "paused under caps far above what is held");
		SW_CHECKF(a.after_wave2 == 2 * WAVE,
			  "only %zu taken: the second wave waited though no cap was reached",
			  a.after_wave2);
		SW_CHECKF(strstr(a.metrics, "sagewai_svcbustest_consumer_pauses_total") == NULL,
			  "a pause was counted");
	} else {
		/* a batch is taken whole, then the caps are checked: at least
		 * the cap's worth is in hand, perhaps the whole first wave */
		SW_CHECKF(a.held_at_pause >= 10 && a.held_at_pause <= WAVE,
			  "%s: %zu of the first %d taken", which, a.held_at_pause, WAVE);
		SW_CHECKF(a.paused_at_check, "%s: %d bytes held in %zu items, not paused", which,
			  (int)a.held_at_pause * MSG_BYTES, a.held_at_pause);
		SW_CHECKF(a.after_wave2 == a.held_at_pause,
			  "%s: %zu taken while the first wave was held (the cap let more in)",
			  which, a.after_wave2);
		SW_CHECKF(strstr(a.metrics, "sagewai_svcbustest_consumer_pauses_total 1\n") !=
			      NULL,
			  "%s: the pause is not counted once:\n%s", which, a.metrics);
	}
	for (i = 0; i < 2 * WAVE; i++)
		SW_CHECKF(a.seen[i] == 1, "message %d taken %d times", i, a.seen[i]);
	rd_kafka_destroy(a.mk);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(owner);
	return 0;
}
