/*
 * http_metrics: the registry renders the exact Prometheus text format
 * (HELP, TYPE, sample, escaping, special values), keeps creation order,
 * and refuses bad names, negative counter steps and type clashes while
 * counting them in sw_metrics_invalid_total.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sw_http.h"
#include "sw_test.h"

static const char *const expected =
	"# HELP sw_events_total Events seen.\n"
	"# TYPE sw_events_total counter\n"
	"sw_events_total 3.5\n"
	"# HELP sw_queue_depth Queue depth with a \\\\ and a\\nnewline.\n"
	"# TYPE sw_queue_depth gauge\n"
	"sw_queue_depth -2\n"
	"# HELP ns:sub_total\n"
	"# TYPE ns:sub_total counter\n"
	"ns:sub_total 10000000000\n"
	"# HELP sw_ratio Ratio.\n"
	"# TYPE sw_ratio gauge\n"
	"sw_ratio 0.1\n"
	"# HELP sw_nan Not a number.\n"
	"# TYPE sw_nan gauge\n"
	"sw_nan NaN\n"
	"# HELP sw_inf Infinite.\n"
	"# TYPE sw_inf gauge\n"
	"sw_inf +Inf\n"
	"# HELP sw_metrics_invalid_total Metric updates refused (bad name, type or value).\n"
	"# TYPE sw_metrics_invalid_total counter\n"
	"sw_metrics_invalid_total 7\n";

int main(void)
{
	struct sw_metrics *m = sw_metrics_new();
	char *text;

	SW_CHECK(m != NULL);
	text = sw_metrics_render(m);
	SW_CHECK(text != NULL);
	SW_CHECKF(strstr(text, "sw_metrics_invalid_total 0\n") != NULL, "%s", text);
	free(text);

	sw_metrics_counter_add(m, "sw_events_total", "Events seen.", 1);
	sw_metrics_counter_add(m, "sw_events_total", "ignored later help", 2.5);
	sw_metrics_gauge_set(m, "sw_queue_depth", "Queue depth with a \\ and a\nnewline.", 7);
	sw_metrics_gauge_set(m, "sw_queue_depth", NULL, -2);
	sw_metrics_counter_add(m, "ns:sub_total", NULL, 1e10);
	sw_metrics_gauge_set(m, "sw_ratio", "Ratio.", 0.1);
	sw_metrics_gauge_set(m, "sw_nan", "Not a number.", NAN);
	sw_metrics_gauge_set(m, "sw_inf", "Infinite.", INFINITY);

	/* Seven refusals. */
	sw_metrics_counter_add(m, "9starts_with_digit", "", 1);
	sw_metrics_counter_add(m, "has-dash", "", 1);
	sw_metrics_counter_add(m, "", "", 1);
	sw_metrics_counter_add(m, "sw_events_total", "", -1);
	sw_metrics_gauge_set(m, "sw_events_total", "", 1);
	sw_metrics_counter_add(m, "sw_metrics_invalid_total", "", 1);
	sw_metrics_counter_add(m, "label{a=\"b\"}", "", 1);
	sw_metrics_counter_add(NULL, "sw_x", "", 1); /* no registry: no effect */

	text = sw_metrics_render(m);
	SW_CHECK(text != NULL);
	SW_CHECKF(strcmp(text, expected) == 0, "rendered:\n%s\nexpected:\n%s", text, expected);
	free(text);
	sw_metrics_destroy(m);
	sw_metrics_destroy(NULL);
	printf("http_metrics: ok\n");
	return 0;
}
