/*
 * sagewai_plugin.h: the C ABI of sagewai-worker plugins (header only).
 *
 * A plugin is a shared object (built as a module, e.g. CMake
 * add_library(NAME MODULE ...)) dropped into the worker's
 * $SAGEWAI_PLUGIN_DIR. At start the worker dlopen()s every *.so there with
 * RTLD_NOW | RTLD_LOCAL, looks up the one exported symbol
 *
 *     const struct sagewai_plugin *sagewai_plugin_v1(void);
 *
 * calls it once and keeps the returned descriptor for the life of the
 * process. A workflow step `uses: plugin:<name>` then runs that plugin's
 * run() with the step's rendered `with` object as JSON text, and the JSON
 * text the plugin returns becomes the step's output.
 *
 * The worker refuses to start (naming the file) when a .so cannot be
 * loaded, lacks the symbol, returns NULL, has an abi_version it does not
 * speak, an invalid or duplicate name, or no run function.
 *
 * Contract of run():
 *
 *   - input_json is the step's `with` value, valid UTF-8 JSON text of len
 *     bytes, NUL-terminated for convenience (input_json[len] == '\0'). It
 *     is owned by the worker and valid only during the call.
 *   - On success return 0 and set *output_json to a buffer of *output_len
 *     bytes holding ONE JSON value (any type: object, array, string, ...).
 *     The buffer belongs to the plugin: the worker copies what it needs and
 *     then hands it back to free_output() (or to free() when free_output is
 *     NULL, so allocate it with malloc() in that case). Output that is not
 *     valid JSON fails the step ("plugin_error: ...").
 *   - On failure return non-zero and write a short, NUL-terminated reason
 *     into err (at most errlen bytes, errlen >= 1); it becomes the step's
 *     error "plugin_error: <reason>". *output_json is ignored.
 *   - run() is called from one of the worker's plugin threads, possibly
 *     from several threads at once for concurrent steps: it MUST be
 *     thread-safe (no unguarded globals, no strtok, no setenv).
 *   - It must not call exit(), change signal dispositions, fork without
 *     exec, or write to stdout (the worker's log stream is stderr; prefer
 *     reporting through err).
 *   - The worker may abandon a call that outlives the step's timeout or a
 *     cancel: the step is reported TIMED_OUT / CANCELLED at once, the
 *     thread is left to finish, and the late result is freed and dropped.
 *     A plugin doing long work should bound it itself.
 *   - Output larger than the step's output limit fails the step with
 *     "output_too_large: ...".
 *
 * Versioning: abi_version is SAGEWAI_ABI_VERSION at the time the plugin
 * was built. Later versions only append fields to the struct and bump the
 * number; the worker reads only the fields of the version a plugin states,
 * and refuses versions it does not know.
 *
 * A minimal plugin:
 *
 *     #include "sagewai_plugin.h"
 *
 *     static int echo_run(const char *in, size_t len, char **out, size_t *outlen,
 *                         char *err, size_t errlen)
 *     {
 *             (void)err; (void)errlen;
 *             if ((*out = malloc(len)) == NULL)
 *                     return -1;
 *             memcpy(*out, in, len);
 *             *outlen = len;
 *             return 0;
 *     }
 *
 *     static const struct sagewai_plugin echo = {
 *             .abi_version = SAGEWAI_ABI_VERSION,
 *             .name = "echo",
 *             .run = echo_run,
 *             .free_output = NULL,       (free() it)
 *     };
 *
 *     SAGEWAI_PLUGIN_EXPORT const struct sagewai_plugin *sagewai_plugin_v1(void)
 *     {
 *             return &echo;
 *     }
 *
 * See examples/plugins/wordcount for a complete one built by CMake.
 */
#ifndef SAGEWAI_PLUGIN_H
#define SAGEWAI_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. */
#define SAGEWAI_ABI_VERSION 1u

/* The name of the entry point the worker looks up with dlsym(). */
#define SAGEWAI_PLUGIN_SYMBOL "sagewai_plugin_v1"

/* Plugin names: 1..SAGEWAI_PLUGIN_NAME_MAX characters of [a-z0-9_-]. */
#define SAGEWAI_PLUGIN_NAME_MAX 64

/* Mark the entry point visible even under -fvisibility=hidden. */
#define SAGEWAI_PLUGIN_EXPORT __attribute__((visibility("default")))

struct sagewai_plugin {
	uint32_t abi_version; /* SAGEWAI_ABI_VERSION the plugin was built against */
	const char *name;     /* the <name> of `uses: plugin:<name>`; static storage */
	/* Run one step: see the contract above. 0 = success. */
	int (*run)(const char *input_json, size_t len, char **output_json, size_t *output_len,
		   char *err, size_t errlen);
	/* Release an *output_json returned by run(); NULL means free(). */
	void (*free_output)(char *output_json);
};

/* The type of the exported entry point; the descriptor it returns must
 * stay valid while the plugin is loaded (static storage). */
typedef const struct sagewai_plugin *(*sagewai_plugin_v1_fn)(void);

SAGEWAI_PLUGIN_EXPORT const struct sagewai_plugin *sagewai_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif
