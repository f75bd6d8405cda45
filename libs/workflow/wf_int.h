/*
 * sw_workflow internals, grouped by file.
 *
 * A workflow is read in two stages: load.c turns YAML text (or the
 * canonical JSON) into a small tree of wf_node that remembers where each
 * node came from; validate.c walks that tree, checks it and builds the
 * struct sw_workflow. Both sources share the validator, so a stored JSON
 * workflow is held to exactly the rules of the YAML it came from.
 */
#ifndef WF_INT_H
#define WF_INT_H

#include <stdarg.h>
#include <stddef.h>

#include "sw_workflow.h"

#define WF_MAX_BYTES (1u << 20) /* largest YAML text accepted */
#define WF_MAX_DEPTH 32		/* deepest collection nesting (root = 1) */
#define WF_MAX_NODES 100000	/* nodes in one document */
#define WF_MAX_STEPS 1000

enum wf_kind { WF_SCALAR, WF_MAP, WF_SEQ };

struct wf_node {
	enum wf_kind kind;
	int line, col; /* from 1; 0 when the node came from JSON */
	struct wf_node *parent;
	size_t index; /* position among the parent's kids */
	int is_key;   /* a mapping key (then value is NULL) */
	char *text;   /* scalar: its text, NUL-free */
	size_t len;
	json_t *value;	       /* scalar value (YAML 1.2 core schema for plain YAML) */
	struct wf_node **kids; /* map: key, value, key, value...; seq: items */
	size_t nkids, cap;
};

struct wf_doc {
	const char *file; /* YAML: the name used in messages */
	int json;	  /* the tree came from JSON: messages give a path */
	char *err;
	size_t errlen;
	size_t nnodes;
	json_t *warnings; /* strings, like errors; NULL: not collected */
};

/* ---- load.c ---------------------------------------------------------- */

/* Fill d->err with "FILE:LINE:COL: message" (YAML) or "$.path: message"
 * (JSON) for node n (NULL: the document start) and return -1. The result
 * is always valid UTF-8. */
int wf_fail(struct wf_doc *d, const struct wf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same text as a warning, appended to d->warnings: the workflow is
 * still valid. */
void wf_warn(struct wf_doc *d, const struct wf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Copy at most 60 bytes of s into out (size >= 80) for quoting in a
 * message: control characters become '?', a cut is marked "...", and a
 * UTF-8 sequence is never split. Returns out. */
const char *wf_quote(const char *s, size_t len, char *out, size_t outlen);
void wf_utf8_trim(char *s);

struct wf_node *wf_yaml_load(struct wf_doc *d, const char *yaml, size_t len);
struct wf_node *wf_json_load(struct wf_doc *d, json_t *j);
void wf_node_free(struct wf_node *n);
/* The JSON value of a node tree (new reference), or NULL on allocation
 * failure or a key jansson refuses. */
json_t *wf_node_json(const struct wf_node *n);
const char *wf_kind_name(const struct wf_node *n); /* "a mapping", "an integer", ... */

/* ---- validate.c ------------------------------------------------------ */

struct sw_workflow *wf_build(struct wf_doc *d, const struct wf_node *root);

/* ---- template.c ------------------------------------------------------ */

/* Called for each ${{ steps.NAME... }} found by wf_template_scan; expr is
 * the whole expression text. Returns 0, or -1 with err filled. */
typedef int (*wf_ref_fn)(const char *name, size_t namelen, const char *expr, size_t exprlen,
			 void *arg, char *err, size_t errlen);

/* Check the syntax of every ${{ }} in s (len bytes) and report each step
 * reference to fn. 0, or -1 with err naming the expression. */
int wf_template_scan(const char *s, size_t len, wf_ref_fn fn, void *arg, char *err, size_t errlen);

#endif
