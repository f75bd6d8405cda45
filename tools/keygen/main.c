/*
 * sagewai-keygen: the key files of an identity deployment (docs/IDENTITY.md),
 * made with libsodium's random bytes. See usage() below.
 *
 * Every secret file is created with O_EXCL and mode 0600 whatever the
 * umask (libs/core's _FILE settings refuse a file that grants its group or
 * others any access), written in full and fsynced, and removed again if any
 * of that fails; an existing file is never overwritten. A key lives in this
 * process only in locked memory that is wiped before exit; none is ever
 * printed except a public key.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#define PROG "sagewai-keygen"
#define KEY_BYTES 32
#define HEX_LEN (2 * KEY_BYTES)
#define MASTER_MAX (64u << 10) /* a master keys file larger than this is refused */

static void usage(FILE *o)
{
	fputs("usage: " PROG " secret FILE\n"
	      "       " PROG " master [--add] FILE\n"
	      "       " PROG " x25519 PRIVFILE PUBFILE\n"
	      "       " PROG " x25519-pub PRIVFILE\n"
	      "\n"
	      "secret      32 random bytes as 64 lowercase hex and a newline, mode 0600:\n"
	      "            SAGEWAI_SECRET_MAC_KEY_FILE, or any _FILE setting's key.\n"
	      "master      identity's master keys file (SAGEWAI_IDENTITY_MASTER_KEYS_FILE):\n"
	      "            \"k1 HEX64\", mode 0600. --add appends a new key kN (N one more than\n"
	      "            the largest k-number in the file), which becomes the current\n"
	      "            key (the last line) through a rename; the old keys stay to open\n"
	      "            what they sealed. Restart sagewai-identity, then run\n"
	      "            'sagewai secret rekey' to move every value to the new key.\n"
	      "x25519      a sandbox host's seal key pair: PRIVFILE the secret key (64 hex,\n"
	      "            0600: SAGEWAI_SANDBOXD_SEAL_KEY_FILE), PUBFILE its public key (64\n"
	      "            hex, 0644) for identity's hosts file (\"NAME HEX64\" lines).\n"
	      "x25519-pub  print the public key of an existing PRIVFILE (64 hex).\n"
	      "\n"
	      "An existing FILE, PRIVFILE or PUBFILE is never overwritten (exit 1).\n"
	      "Exit status: 0 done, 1 failure, 2 usage.\n",
	      o);
}

static void die_usage(const char *msg)
{
	fprintf(stderr, PROG ": %s (see '" PROG " --help')\n", msg);
	exit(2);
}

/* Write len bytes of data to a new file path of mode mode; 0, or -1 after
 * a message (nothing left behind). */
static int write_new(const char *path, const void *data, size_t len, mode_t mode)
{
	const char *p = data;
	size_t off = 0;
	ssize_t w;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, mode);
	if (fd == -1) {
		if (errno == EEXIST)
			fprintf(stderr, PROG ": %s exists; not overwritten\n", path);
		else
			fprintf(stderr, PROG ": cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) != 0)
		goto fail;
	while (off < len) {
		w = write(fd, p + off, len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		off += (size_t)w;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
	if (fd != -1)
		close(fd);
	unlink(path);
	return -1;
}

/* A locked, wiped-on-free buffer for key material. */
static void *key_alloc(size_t n)
{
	void *p = sodium_malloc(n);

	if (p == NULL) {
		fprintf(stderr, PROG ": out of (locked) memory\n");
		exit(1);
	}
	return p;
}

/* "HEX64\n" of a fresh random key (into line, HEX_LEN + 2 bytes). */
static void random_hex(char *line)
{
	unsigned char *k = key_alloc(KEY_BYTES);

	randombytes_buf(k, KEY_BYTES);
	sodium_bin2hex(line, HEX_LEN + 1, k, KEY_BYTES);
	line[HEX_LEN] = '\n';
	line[HEX_LEN + 1] = '\0';
	sodium_free(k);
}

static int cmd_secret(const char *path)
{
	char *line = key_alloc(HEX_LEN + 2);
	int rc;

	random_hex(line);
	rc = write_new(path, line, HEX_LEN + 1, 0600);
	sodium_free(line);
	return rc == 0 ? 0 : 1;
}

/* Read a whole file of at most max bytes that grants its group and others
 * nothing, into locked memory (NUL-terminated; caller sodium_frees). */
static char *read_private(const char *path, size_t max, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY)) == -1) {
		fprintf(stderr, PROG ": cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, PROG ": %s: not a regular file\n", path);
		goto fail;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		fprintf(stderr, PROG ": %s: mode %04o grants group or others access\n", path,
			(unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if ((size_t)st.st_size >= max) {
		fprintf(stderr, PROG ": %s: larger than %zu bytes\n", path, max - 1);
		goto fail;
	}
	buf = key_alloc(max + 1);
	while ((r = read(fd, buf + n, max - n)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			fprintf(stderr, PROG ": cannot read %s: %s\n", path, strerror(errno));
			goto fail;
		}
		n += (size_t)r;
		if (n == max) {
			fprintf(stderr, PROG ": %s: larger than %zu bytes\n", path, max - 1);
			goto fail;
		}
	}
	buf[n] = '\0';
	close(fd);
	*len = n;
	return buf;
fail:
	sodium_free(buf);
	close(fd);
	return NULL;
}

/* The largest N of "kN HEX64" lines; -1 when a line is malformed. */
static long master_last(const char *path, const char *text)
{
	const char *line = text, *nl, *sp;
	long max = 0, lineno = 0;

	for (; *line != '\0'; line = nl + 1) {
		size_t n, idlen;

		lineno++;
		if ((nl = strchr(line, '\n')) == NULL) {
			fprintf(stderr, PROG ": %s:%ld: no newline at the end\n", path, lineno);
			return -1;
		}
		n = (size_t)(nl - line);
		sp = memchr(line, ' ', n);
		idlen = sp != NULL ? (size_t)(sp - line) : 0;
		if (sp == NULL || idlen == 0 || idlen > 32 || n - idlen - 1 != HEX_LEN ||
		    strspn(sp + 1, "0123456789abcdefABCDEF") < HEX_LEN) {
			fprintf(stderr, PROG ": %s:%ld: not \"KEYID HEX64\"\n", path, lineno);
			return -1;
		}
		if (line[0] == 'k' && idlen > 1 && idlen < 12 &&
		    strspn(line + 1, "0123456789") == idlen - 1) {
			long v = strtol(line + 1, NULL, 10);

			if (v > max)
				max = v;
		}
	}
	return max;
}

static int cmd_master(const char *path, int add)
{
	char tmp[4096], *old = NULL, *out = NULL;
	size_t olen = 0, cap;
	long last;
	int rc = 1, n;

	if (!add) {
		out = key_alloc(HEX_LEN + 8);
		memcpy(out, "k1 ", 3);
		random_hex(out + 3);
		rc = write_new(path, out, strlen(out), 0600) == 0 ? 0 : 1;
		goto out;
	}
	if ((old = read_private(path, MASTER_MAX, &olen)) == NULL)
		goto out;
	if ((last = master_last(path, old)) < 0)
		goto out;
	if (last >= 999999999L) {
		fprintf(stderr, PROG ": %s: no key id left after k%ld\n", path, last);
		goto out;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp)) {
		fprintf(stderr, PROG ": %s: path too long\n", path);
		goto out;
	}
	cap = olen + HEX_LEN + 32;
	out = key_alloc(cap);
	memcpy(out, old, olen);
	n = snprintf(out + olen, cap - olen, "k%ld ", last + 1);
	random_hex(out + olen + (size_t)n);
	unlink(tmp); /* a leftover of an interrupted --add */
	if (write_new(tmp, out, strlen(out), 0600) != 0)
		goto out;
	if (rename(tmp, path) != 0) {
		fprintf(stderr, PROG ": cannot replace %s: %s\n", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	printf("k%ld\n", last + 1);
	rc = 0;
out:
	sodium_free(old);
	sodium_free(out);
	return rc;
}

static int cmd_x25519(const char *priv, const char *pub)
{
	unsigned char pk[crypto_box_PUBLICKEYBYTES], *sk = key_alloc(crypto_box_SECRETKEYBYTES);
	char *line = key_alloc(HEX_LEN + 2), publine[HEX_LEN + 2];
	int rc = 1;

	if (access(pub, F_OK) == 0) {
		fprintf(stderr, PROG ": %s exists; not overwritten\n", pub);
		goto out;
	}
	crypto_box_keypair(pk, sk);
	sodium_bin2hex(line, HEX_LEN + 1, sk, crypto_box_SECRETKEYBYTES);
	line[HEX_LEN] = '\n';
	sodium_bin2hex(publine, HEX_LEN + 1, pk, sizeof(pk));
	publine[HEX_LEN] = '\n';
	if (write_new(priv, line, HEX_LEN + 1, 0600) != 0)
		goto out;
	if (write_new(pub, publine, HEX_LEN + 1, 0644) != 0) {
		unlink(priv);
		goto out;
	}
	rc = 0;
out:
	sodium_free(sk);
	sodium_free(line);
	return rc;
}

static int cmd_x25519_pub(const char *priv)
{
	unsigned char pk[crypto_box_PUBLICKEYBYTES], *sk = key_alloc(crypto_box_SECRETKEYBYTES);
	char hex[HEX_LEN + 1], *text;
	size_t len, bin = 0;
	const char *end = NULL;
	int rc = 1;

	if ((text = read_private(priv, HEX_LEN + 3, &len)) == NULL)
		goto out;
	if (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	if (len > 0 && text[len - 1] == '\r')
		text[--len] = '\0';
	if (len != HEX_LEN ||
	    sodium_hex2bin(sk, crypto_box_SECRETKEYBYTES, text, len, NULL, &bin, &end) != 0 ||
	    bin != crypto_box_SECRETKEYBYTES || end != text + len) {
		fprintf(stderr, PROG ": %s: not a 64-hex X25519 secret key\n", priv);
		goto out;
	}
	if (crypto_scalarmult_base(pk, sk) != 0) {
		fprintf(stderr, PROG ": %s: not a usable X25519 secret key\n", priv);
		goto out;
	}
	printf("%s\n", sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk)));
	rc = 0;
out:
	sodium_free(sk);
	sodium_free(text);
	return rc;
}

int main(int argc, char **argv)
{
	int add = 0, rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, PROG ": cannot initialise libsodium\n");
		return 1;
	}
	if (argc < 2)
		die_usage("missing command");
	if (strcmp(argv[1], "secret") == 0) {
		if (argc != 3)
			die_usage("secret takes one FILE");
		rc = cmd_secret(argv[2]);
	} else if (strcmp(argv[1], "master") == 0) {
		if (argc == 4 && strcmp(argv[2], "--add") == 0)
			add = 1;
		else if (argc != 3 || argv[2][0] == '-')
			die_usage("master takes [--add] FILE");
		rc = cmd_master(argv[2 + add], add);
	} else if (strcmp(argv[1], "x25519") == 0) {
		if (argc != 4)
			die_usage("x25519 takes PRIVFILE PUBFILE");
		rc = cmd_x25519(argv[2], argv[3]);
	} else if (strcmp(argv[1], "x25519-pub") == 0) {
		if (argc != 3)
			die_usage("x25519-pub takes PRIVFILE");
		rc = cmd_x25519_pub(argv[2]);
	} else {
		die_usage("unknown command");
		rc = 2;
	}
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
