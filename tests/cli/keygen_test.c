/*
 * sagewai-keygen: the files it makes (format, mode 0600 under any umask, a
 * public key that is the secret key's), that it never overwrites one, that
 * master --add appends a new current key and keeps the old ones, and that
 * it refuses what it cannot use.
 *
 *   keygen_test PATH_TO_SAGEWAI_KEYGEN
 */
#include <sys/stat.h>
#include <sodium.h>

#include "cli_spawn.h"

static const char *bin;
static char dir[] = "/tmp/sagewai-keygen-test-XXXXXX";
static char *envp[] = {"PATH=/usr/bin:/bin", NULL};

static void kg(struct cli_out *o, const char *a1, const char *a2, const char *a3)
{
	const char *args[4] = {a1, a2, a3, NULL};

	cli_runv(bin, args, envp, NULL, o);
}

static void path(char *out, size_t n, const char *name)
{
	SW_CHECK((size_t)snprintf(out, n, "%s/%s", dir, name) < n);
}

static char *slurp(const char *p)
{
	FILE *f = fopen(p, "rb");
	char *b = calloc(1, 1 << 16);
	size_t n;

	SW_CHECKF(f != NULL && b != NULL, "%s", p);
	n = fread(b, 1, (1 << 16) - 1, f);
	b[n] = '\0';
	fclose(f);
	return b;
}

static void mode_is(const char *p, mode_t want)
{
	struct stat st;

	SW_CHECK(stat(p, &st) == 0);
	SW_CHECKF((st.st_mode & 07777) == want, "%s: mode %04o, expected %04o", p,
		  (unsigned)(st.st_mode & 07777), (unsigned)want);
}

/* s is 64 lowercase hex digits and a newline, nothing else */
static int hex_line(const char *s)
{
	return strlen(s) == 65 && strspn(s, "0123456789abcdef") == 64 && s[64] == '\n';
}

static void expect_rc(const char *what, struct cli_out *o, int rc, const char *err_has)
{
	if (o->status != rc || (err_has != NULL && strstr(o->err, err_has) == NULL)) {
		cli_out_dump(what, o);
		SW_CHECKF(0, "%s: expected exit %d%s%s", what, rc, err_has ? " and " : "",
			  err_has ? err_has : "");
	}
	cli_out_free(o);
}

static void test_secret(void)
{
	char a[256], b[256], *x, *y;
	struct cli_out o;

	path(a, sizeof(a), "mac.key");
	path(b, sizeof(b), "mac2.key");
	kg(&o, "secret", a, NULL);
	expect_rc("secret", &o, 0, NULL);
	kg(&o, "secret", b, NULL);
	expect_rc("secret 2", &o, 0, NULL);
	mode_is(a, 0600);
	x = slurp(a);
	y = slurp(b);
	SW_CHECKF(hex_line(x), "secret file: %s", x);
	SW_CHECK(strcmp(x, y) != 0);
	kg(&o, "secret", a, NULL);
	expect_rc("secret exists", &o, 1, "exists; not overwritten");
	free(y);
	y = slurp(a);
	SW_CHECK(strcmp(x, y) == 0);
	free(x);
	free(y);
	kg(&o, "secret", "/nonexistent-dir/k", NULL);
	expect_rc("secret no dir", &o, 1, "cannot create");
}

static void test_master(void)
{
	char m[256], bad[256], open_[256], *x, *y;
	struct cli_out o;
	FILE *f;

	path(m, sizeof(m), "master.keys");
	kg(&o, "master", m, NULL);
	expect_rc("master", &o, 0, NULL);
	mode_is(m, 0600);
	x = slurp(m);
	SW_CHECKF(strncmp(x, "k1 ", 3) == 0 && hex_line(x + 3), "master: %s", x);
	kg(&o, "master", m, NULL);
	expect_rc("master exists", &o, 1, "exists; not overwritten");

	kg(&o, "master", "--add", m);
	SW_CHECKF(o.status == 0 && strcmp(o.out, "k2\n") == 0, "--add: %s", o.out);
	cli_out_free(&o);
	mode_is(m, 0600);
	y = slurp(m);
	SW_CHECKF(strncmp(y, x, strlen(x)) == 0, "--add changed the old key: %s", y);
	SW_CHECKF(strncmp(y + 68, "k2 ", 3) == 0 && hex_line(y + 71), "--add: %s", y);
	SW_CHECK(strcmp(y + 71, x + 3) != 0);
	free(x);
	free(y);

	/* the next id follows the largest k-number, other ids kept as they are */
	path(bad, sizeof(bad), "other.keys");
	SW_CHECK((f = fopen(bad, "w")) != NULL);
	fprintf(f, "k7 %064d\nlegacy %064d\n", 0, 1);
	fclose(f);
	SW_CHECK(chmod(bad, 0600) == 0);
	kg(&o, "master", "--add", bad);
	SW_CHECKF(o.status == 0 && strcmp(o.out, "k8\n") == 0, "--add after k7: %s", o.out);
	cli_out_free(&o);

	SW_CHECK((f = fopen(bad, "w")) != NULL);
	fprintf(f, "k1 abc\n");
	fclose(f);
	kg(&o, "master", "--add", bad);
	expect_rc("--add malformed", &o, 1, "not \"KEYID HEX64\"");
	x = slurp(bad);
	SW_CHECK(strcmp(x, "k1 abc\n") == 0);
	free(x);

	path(open_, sizeof(open_), "open.keys");
	SW_CHECK((f = fopen(open_, "w")) != NULL);
	fprintf(f, "k1 %064d\n", 0);
	fclose(f);
	SW_CHECK(chmod(open_, 0644) == 0);
	kg(&o, "master", "--add", open_);
	expect_rc("--add 0644", &o, 1, "grants group or others access");
	kg(&o, "master", "--add", "/nonexistent-dir/k");
	expect_rc("--add missing", &o, 1, "cannot read");
}

static void test_x25519(void)
{
	char sk[256], pk[256], other[256], *s, *p;
	unsigned char skb[32], pkb[32], want[32];
	struct cli_out o;

	path(sk, sizeof(sk), "seal.key");
	path(pk, sizeof(pk), "seal.pub");
	kg(&o, "x25519", sk, pk);
	expect_rc("x25519", &o, 0, NULL);
	mode_is(sk, 0600);
	mode_is(pk, 0644);
	s = slurp(sk);
	p = slurp(pk);
	SW_CHECK(hex_line(s) && hex_line(p));
	SW_CHECK(sodium_hex2bin(skb, 32, s, 64, NULL, NULL, NULL) == 0);
	SW_CHECK(sodium_hex2bin(pkb, 32, p, 64, NULL, NULL, NULL) == 0);
	SW_CHECK(crypto_scalarmult_base(want, skb) == 0);
	SW_CHECK(memcmp(want, pkb, 32) == 0);

	kg(&o, "x25519-pub", sk, NULL);
	SW_CHECKF(o.status == 0 && strcmp(o.out, p) == 0, "x25519-pub: %s", o.out);
	cli_out_free(&o);

	kg(&o, "x25519", sk, pk);
	expect_rc("x25519 exists", &o, 1, "exists; not overwritten");
	/* the public key file exists: no secret key made either */
	path(other, sizeof(other), "other.key");
	kg(&o, "x25519", other, pk);
	expect_rc("x25519 pub exists", &o, 1, "exists; not overwritten");
	SW_CHECK(access(other, F_OK) != 0);
	{
		char *again = slurp(sk);

		SW_CHECK(strcmp(s, again) == 0);
		free(again);
	}

	kg(&o, "x25519-pub", pk, NULL);
	expect_rc("x25519-pub of a 0644 file", &o, 1, "grants group or others access");
	{
		FILE *f = fopen(other, "w");

		SW_CHECK(f != NULL);
		fputs("not hex at all, but sixty-four characters long ......... padded\n", f);
		fclose(f);
		SW_CHECK(chmod(other, 0600) == 0);
	}
	kg(&o, "x25519-pub", other, NULL);
	expect_rc("x25519-pub garbage", &o, 1, "not a 64-hex X25519 secret key");
	free(s);
	free(p);
}

static void test_usage(void)
{
	struct cli_out o;

	kg(&o, NULL, NULL, NULL);
	expect_rc("no command", &o, 2, "missing command");
	kg(&o, "frob", NULL, NULL);
	expect_rc("unknown", &o, 2, "unknown command");
	kg(&o, "secret", NULL, NULL);
	expect_rc("secret no file", &o, 2, "secret takes one FILE");
	kg(&o, "master", "--rotate", "x");
	expect_rc("master bad flag", &o, 2, "master takes [--add] FILE");
	kg(&o, "--help", NULL, NULL);
	SW_CHECK(o.status == 0 && strstr(o.out, "x25519 PRIVFILE PUBFILE") != NULL);
	cli_out_free(&o);
}

int main(int argc, char **argv)
{
	char cmd[300];

	if (argc != 2) {
		fprintf(stderr, "usage: keygen_test PATH_TO_SAGEWAI_KEYGEN\n");
		return 2;
	}
	bin = argv[1];
	SW_CHECK(sodium_init() >= 0);
	SW_CHECK(mkdtemp(dir) != NULL);
	umask(0); /* the modes must not depend on the caller's umask */
	test_secret();
	test_master();
	test_x25519();
	test_usage();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	SW_CHECK(system(cmd) == 0);
	printf("sagewai-keygen test ok\n");
	return 0;
}
