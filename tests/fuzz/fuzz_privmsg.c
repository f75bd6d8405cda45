/*
 * libFuzzer target for the messages sandboxd's privileged part reads
 * (services/sandboxd/privmsg.c, docs/SANDBOX.md): the bytes come from the
 * unprivileged part, which a hostile runner or a Kafka/HTTP peer may have
 * taken over.
 *
 * Whatever the input: no crash, no read past it; an accepted message has
 * a known type, strings NUL-terminated within their caps and free of NUL,
 * a network policy in range, and re-encodes to exactly the same bytes (one
 * encoding per message: nothing the decoder skips or normalises).
 *
 * With SW_FUZZ_PRIVMSG_SEEDS=DIR in the environment, LLVMFuzzerInitialize
 * writes one valid message of each type there first (the ctest uses it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "privmsg.h"

static void seed(const char *dir, const char *name, const struct sbd_pm *m)
{
	uint8_t buf[SBD_PM_MAX];
	size_t n = sbd_pm_encode(m, buf, sizeof(buf));
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n == 0 || (f = fopen(path, "wb")) == NULL)
		return;
	fwrite(buf, 1, n, f);
	fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("SW_FUZZ_PRIVMSG_SEEDS");
	struct sbd_pm m;

	(void)argc;
	(void)argv;
	if (dir == NULL)
		return 0;
	m = (struct sbd_pm){.type = SBD_PM_CREATE, .id = 1, .u.create.net = 1};
	m.u.create.limits[0] = 64;
	m.u.create.limits[6] = 500;
	snprintf(m.u.create.variant, sizeof(m.u.create.variant), "base");
	seed(dir, "create", &m);
	m = (struct sbd_pm){.type = SBD_PM_DESTROY, .id = 2, .u.destroy.handle = 3};
	seed(dir, "destroy", &m);
	m = (struct sbd_pm){.type = SBD_PM_CREATED, .id = 3, .u.created.handle = 1,
			    .u.created.pid = 4242};
	seed(dir, "created", &m);
	m = (struct sbd_pm){.type = SBD_PM_DESTROYED, .id = 4, .u.destroyed.oom_killed = 1};
	seed(dir, "destroyed", &m);
	m = (struct sbd_pm){.type = SBD_PM_ERROR, .id = 5};
	snprintf(m.u.error.text, sizeof(m.u.error.text), "no such sandbox");
	seed(dir, "error", &m);
	return 0;
}

static void check_str(const char *s, size_t cap)
{
	if (strnlen(s, cap + 1) > cap)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbd_pm m;
	uint8_t *again;
	char err[256];
	size_t n;

	err[0] = '\0';
	if (sbd_pm_decode(data, size, &m, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();
		return 0;
	}
	switch (m.type) {
	case SBD_PM_CREATE:
		check_str(m.u.create.variant, SBD_PM_VARIANT_MAX);
		if (m.u.create.net > SBD_PM_NET_MAX || m.u.create.variant[0] == '\0')
			abort();
		break;
	case SBD_PM_ERROR:
		check_str(m.u.error.text, SBD_PM_TEXT_MAX);
		break;
	case SBD_PM_DESTROY:
	case SBD_PM_CREATED:
	case SBD_PM_DESTROYED:
		break;
	default:
		abort();
	}
	if ((again = malloc(SBD_PM_MAX)) == NULL)
		return 0;
	n = sbd_pm_encode(&m, again, SBD_PM_MAX);
	if (n != size || memcmp(again, data, n) != 0)
		abort();
	free(again);
	return 0;
}
