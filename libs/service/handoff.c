/*
 * handoff.c: the worker-thread hand-off of sw_service.h. The loop and the
 * threads share the service's queues under h->mu; the threads wait on
 * h->cv and wake the loop with event_active on h->ev (safe across threads
 * once evthread_use_pthreads ran, which the frame does first).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sw_service.h"

static void *thread_entry(void *opaque)
{
	struct sw_handoff *h = opaque;

	return h->thread_main(h, h->arg);
}

/* The event's callback needs both on_loop and arg: keep them beside h. */
struct handoff_loop {
	void (*on_loop)(void *arg);
	void *arg;
};

static void on_event(evutil_socket_t fd, short what, void *opaque)
{
	struct handoff_loop *l = opaque;

	(void)fd;
	(void)what;
	l->on_loop(l->arg);
}

int sw_handoff_start(struct sw_handoff *h, struct event_base *base, int nthreads,
		     void *(*thread_main)(struct sw_handoff *h, void *arg),
		     void (*on_loop)(void *arg), void *arg, char *err, size_t errlen)
{
	struct handoff_loop *l;
	int i;

	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->inited = 1;
	h->thread_main = thread_main;
	h->arg = arg;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (nthreads > 0 && (h->th = calloc((size_t)nthreads, sizeof(*h->th))) == NULL)) {
		free(l);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	l->on_loop = on_loop;
	l->arg = arg;
	if ((h->ev = event_new(base, -1, 0, on_event, l)) == NULL) {
		free(l);
		snprintf(err, errlen, "event_new failed");
		return -1;
	}
	for (i = 0; i < nthreads; i++) {
		int rc = pthread_create(&h->th[i], NULL, thread_entry, h);

		if (rc != 0) {
			snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
			sw_handoff_stop(h, -1);
			return -1;
		}
		h->nthreads++;
	}
	return 0;
}

void sw_handoff_lock(struct sw_handoff *h)
{
	pthread_mutex_lock(&h->mu);
}

void sw_handoff_unlock(struct sw_handoff *h)
{
	pthread_mutex_unlock(&h->mu);
}

int sw_handoff_wait(struct sw_handoff *h)
{
	if (h->stopping)
		return 0;
	pthread_cond_wait(&h->cv, &h->mu);
	return !h->stopping;
}

int sw_handoff_wait_ms(struct sw_handoff *h, int ms)
{
	struct timespec ts;

	if (h->stopping)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&h->cv, &h->mu, &ts);
	return !h->stopping;
}

void sw_handoff_signal(struct sw_handoff *h, int broadcast)
{
	if (broadcast)
		pthread_cond_broadcast(&h->cv);
	else
		pthread_cond_signal(&h->cv);
}

void sw_handoff_wake(struct sw_handoff *h)
{
	event_active(h->ev, EV_READ, 0);
}

int sw_handoff_stopping(const struct sw_handoff *h)
{
	return h->stopping;
}

int sw_handoff_stop(struct sw_handoff *h, int timeout_ms)
{
	struct timespec ts;
	int i, stuck = 0;

	if (!h->inited)
		return 0;
	pthread_mutex_lock(&h->mu);
	h->stopping = 1;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (timeout_ms >= 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
	}
	for (i = 0; i < h->nthreads; i++) {
		if (timeout_ms < 0)
			pthread_join(h->th[i], NULL);
		else if (pthread_timedjoin_np(h->th[i], NULL, &ts) != 0)
			stuck = 1;
	}
	if (stuck)
		return -1;
	if (h->ev != NULL) {
		free(event_get_callback_arg(h->ev));
		event_free(h->ev);
	}
	free(h->th);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	memset(h, 0, sizeof(*h));
	return 0;
}
