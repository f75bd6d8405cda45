/*
 * event.h: what the files of sagewai-event share.
 */
#ifndef SW_EVENT_TOOL_H
#define SW_EVENT_TOOL_H

#include <stdio.h>

#include "sw_events.h"

/* docs.c */

/* Print the Markdown reference of every event type (docs/EVENTS.md) to
 * out. 0, or -1 (a schema that does not parse, out of memory, a write
 * error). */
int event_docs(struct sw_event_registry *r, FILE *out);

#endif
