/*
 * Unit tests of the scheduler's outbox helpers (services/scheduler/
 * outbox.c): the in-flight seq set against a plain reference under random
 * adds and deletes (deletion by backward shift is easy to get wrong), and
 * the outbox INSERT built for a transition's events.
 */
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "sw_test.h"

static void test_seqset(void)
{
	enum { RANGE = 3000, OPS = 200000 };
	static unsigned char ref[RANGE + 1];
	struct sched_seqset s;
	size_t len = 0, i;
	unsigned seed = 12345;

	SW_CHECK(sched_seqset_init(&s, 8) == 0);
	for (i = 0; i < OPS; i++) {
		int64_t v;

		seed = seed * 1103515245u + 12345u;
		v = (int64_t)(seed >> 8) % RANGE + 1;
		if ((seed >> 4) % 3 != 0) {
			int rc = sched_seqset_add(&s, v);

			SW_CHECKF(rc == (ref[v] ? 0 : 1), "add %lld returned %d", (long long)v,
				  rc);
			if (!ref[v])
				len++;
			ref[v] = 1;
		} else {
			sched_seqset_del(&s, v);
			if (ref[v])
				len--;
			ref[v] = 0;
		}
		SW_CHECK(s.len == len);
		if (i % 997 == 0) {
			int64_t w;

			for (w = 1; w <= RANGE; w++)
				SW_CHECKF(sched_seqset_has(&s, w) == ref[w], "after %zu ops: %lld",
					  i, (long long)w);
		}
	}
	/* large values and emptying the set */
	SW_CHECK(sched_seqset_add(&s, INT64_MAX) == 1);
	SW_CHECK(sched_seqset_has(&s, INT64_MAX));
	sched_seqset_del(&s, INT64_MAX);
	for (i = 1; i <= RANGE; i++)
		sched_seqset_del(&s, (int64_t)i);
	SW_CHECK(s.len == 0);
	for (i = 1; i <= RANGE; i++)
		SW_CHECK(!sched_seqset_has(&s, (int64_t)i));
	sched_seqset_free(&s);
}

static void test_outbox_sql(void)
{
	struct sched_event ev[2];
	char *params[4];
	uint8_t payload[3] = {0xc3, 0x01, 0xff};

	memset(ev, 0, sizeof(ev));
	snprintf(ev[0].id, sizeof(ev[0].id), "01890000-0000-7000-8000-000000000001");
	ev[0].topic = SW_TOPIC_RUNS;
	snprintf(ev[0].key, sizeof(ev[0].key), "01890000-0000-7000-8000-00000000000a");
	ev[0].buf = payload;
	ev[0].len = sizeof(payload);
	ev[1] = ev[0];
	snprintf(ev[1].id, sizeof(ev[1].id), "01890000-0000-7000-8000-000000000002");
	ev[1].topic = SW_TOPIC_STEPS;
	snprintf(ev[1].key, sizeof(ev[1].key), "a \"key\", \\ {odd}");
	ev[1].len = 0;
	/* one text for any count: each connection prepares it once */
	SW_CHECK(strstr(sched_outbox_insert_sql, "unnest($1::uuid[], $2::text[], $3::text[], "
						 "$4::text[])") != NULL);
	SW_CHECK(strstr(sched_outbox_insert_sql, "RETURNING seq, event_id::text") != NULL);
	SW_CHECK(sched_outbox_params(ev, 2, params) == 0);
	SW_CHECKF(strcmp(params[0], "{\"01890000-0000-7000-8000-000000000001\","
				    "\"01890000-0000-7000-8000-000000000002\"}") == 0,
		  "%s", params[0]);
	SW_CHECKF(strcmp(params[1], "{\"sagewai.runs\",\"sagewai.steps\"}") == 0, "%s", params[1]);
	SW_CHECKF(strcmp(params[2], "{\"01890000-0000-7000-8000-00000000000a\","
				    "\"a \\\"key\\\", \\\\ {odd}\"}") == 0,
		  "%s", params[2]);
	SW_CHECKF(strcmp(params[3], "{c301ff,\"\"}") == 0, "%s", params[3]);
	sched_outbox_params_free(params);
	SW_CHECK(params[0] == NULL && params[3] == NULL);
	SW_CHECK(sched_outbox_params(ev, 0, params) == -1 && params[0] == NULL);
	SW_CHECK(sched_outbox_params(ev, SCHED_OUTBOX_MAX + 1, params) == -1);
}

int main(void)
{
	test_seqset();
	test_outbox_sql();
	fprintf(stderr, "outbox unit: ok\n");
	return 0;
}
