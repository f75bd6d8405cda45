/*
 * artifact.c: the rules of a cli_agent step's artifact: destination
 * (sw_workflow.h, "Artifacts"). validate.c applies them at registration,
 * node by node, to the values that hold no template; sandboxd applies
 * sw_artifact_check to the whole templated spec before delivering.
 */
#include <stdio.h>
#include <string.h>

#include "sw_workflow.h"

static int is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int has_nul(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL;
}

/* s[0..len) holds sub */
static int holds(const char *s, size_t len, const char *sub)
{
	return memmem(s, len, sub, strlen(sub)) != NULL;
}

/* "host[:port]" at s[0..len): a DNS name or IPv4 ([A-Za-z0-9.-]) or an
 * [IPv6] literal, then an optional port 1..65535. */
static const char *authority_refusal(const char *s, size_t len)
{
	size_t i = 0, h;
	unsigned long port = 0;

	if (len == 0)
		return "it has no host";
	if (memchr(s, '@', len) != NULL)
		return "it must not hold credentials (user@host): they come from the identity";
	if (s[0] == '[') {
		for (i = 1; i < len && s[i] != ']'; i++)
			if (!(s[i] == ':' || s[i] == '.' || is_alnum((unsigned char)s[i])))
				return "its host is not a valid IPv6 literal";
		if (i == len || i == 1)
			return "its host is not a valid IPv6 literal";
		i++;
	} else {
		for (; i < len && s[i] != ':'; i++)
			if (!(is_alnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-'))
				return "its host holds a character not allowed in a host name";
		if (i == 0)
			return "it has no host";
		if (s[0] == '.' || s[0] == '-' || s[i - 1] == '-')
			return "its host is not a valid host name";
	}
	if (i == len)
		return NULL;
	if (s[i] != ':' || i + 1 == len)
		return "its port is not a number";
	for (h = i + 1; h < len; h++) {
		if (s[h] < '0' || s[h] > '9' || h - i > 5)
			return "its port is not a number in 1..65535";
		port = port * 10 + (unsigned long)(s[h] - '0');
	}
	return port >= 1 && port <= 65535 ? NULL : "its port is not a number in 1..65535";
}

/* The scheme prefix of an http(s) URL, its length, or 0. */
static size_t scheme_len(const char *s, size_t len)
{
	if (len >= 8 && memcmp(s, "https://", 8) == 0)
		return 8;
	if (len >= 7 && memcmp(s, "http://", 7) == 0)
		return 7;
	return 0;
}

const char *sw_artifact_repo_refusal(const char *s, size_t len)
{
	size_t sl = scheme_len(s, len), i, a;
	const char *why;

	if (len > SW_ARTIFACT_URL_MAX || has_nul(s, len))
		return "it is longer than 512 bytes or holds NUL";
	if (sl == 0)
		return "it is not an https:// (or http://) URL";
	for (a = sl; a < len && s[a] != '/'; a++)
		;
	if ((why = authority_refusal(s + sl, a - sl)) != NULL)
		return why;
	if (a + 1 >= len)
		return "it has no repository path";
	for (i = a; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '?' || c == '#')
			return "it must not have a query or fragment";
		if (!(is_alnum(c) || strchr("/._~-%", c) != NULL))
			return "its path holds a character not allowed here";
	}
	if (holds(s + a, len - a, "/../") || holds(s + a, len - a, "/./") ||
	    holds(s + a, len - a, "//") || (len - a >= 3 && memcmp(s + len - 3, "/..", 3) == 0))
		return "its path holds an empty, . or .. segment";
	return NULL;
}

const char *sw_artifact_branch_refusal(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 200)
		return "it must be 1..200 bytes";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(is_alnum(c) || c == '.' || c == '_' || c == '-' || c == '/'))
			return "it holds a character not allowed in a branch name "
			       "([A-Za-z0-9._/-])";
	}
	if (s[0] == '-' || s[0] == '/' || s[0] == '.' || s[len - 1] == '/' || s[len - 1] == '.')
		return "it must not start with - / . or end with / .";
	if (holds(s, len, "..") || holds(s, len, "//") || holds(s, len, "/."))
		return "it must not hold .. // or /.";
	if ((len >= 5 && memcmp(s + len - 5, ".lock", 5) == 0) ||
	    (len == 4 && memcmp(s, "HEAD", 4) == 0))
		return "it is not a valid branch name";
	return NULL;
}

const char *sw_artifact_bucket_refusal(const char *s, size_t len)
{
	size_t i, dots = 0, digits = 0;

	if (len < 3 || len > 63)
		return "a bucket name is 3..63 bytes";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
			return "a bucket name holds only a-z 0-9 . and -";
		dots += c == '.';
		digits += c >= '0' && c <= '9';
	}
	if (!is_alnum((unsigned char)s[0]) || !is_alnum((unsigned char)s[len - 1]))
		return "a bucket name starts and ends with a letter or digit";
	if (holds(s, len, "..") || holds(s, len, ".-") || holds(s, len, "-."))
		return "a bucket name has no .. .- or -.";
	if (dots == 3 && digits + dots == len)
		return "a bucket name is not an IP address";
	return NULL;
}

/* A relative path of [A-Za-z0-9._-] names ("@+=,~" too), no empty, . or
 * .. component; for a prefix, a trailing / is allowed. */
static const char *rel_refusal(const char *s, size_t len, int prefix)
{
	size_t i, start = 0;

	if (len > SW_ARTIFACT_PATH_MAX || has_nul(s, len))
		return "it is longer than 512 bytes or holds NUL";
	if (len > 0 && s[0] == '/')
		return "it must be relative (no leading /)";
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '/') {
			unsigned char c = (unsigned char)s[i];

			if (!(is_alnum(c) || strchr("._-@+=,~", c) != NULL))
				return "it holds a character other than A-Z a-z 0-9 . _ - @ + = , "
				       "~ "
				       "and /";
			continue;
		}
		if (i == start && !(prefix && i == len && len > 0))
			return "it holds an empty component (// or a trailing /)";
		if ((i - start == 1 && s[start] == '.') ||
		    (i - start == 2 && s[start] == '.' && s[start + 1] == '.'))
			return "it holds a . or .. component";
		start = i + 1;
	}
	return NULL;
}

const char *sw_artifact_prefix_refusal(const char *s, size_t len)
{
	return len == 0 ? NULL : rel_refusal(s, len, 1);
}

const char *sw_artifact_path_refusal(const char *s, size_t len)
{
	if (len == 0)
		return "it must not be empty";
	return rel_refusal(s, len, 0);
}

const char *sw_artifact_endpoint_refusal(const char *s, size_t len)
{
	size_t sl = scheme_len(s, len), a;

	if (len > SW_ARTIFACT_URL_MAX || has_nul(s, len))
		return "it is longer than 512 bytes or holds NUL";
	if (sl == 0)
		return "it is not an https:// (or http://) URL";
	for (a = sl; a < len && s[a] != '/'; a++)
		;
	if (a < len && !(a + 1 == len))
		return "it is scheme://host[:port] only, without a path";
	return authority_refusal(s + sl, a - sl);
}

const char *sw_artifact_region_refusal(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 32)
		return "a region is 1..32 bytes";
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return "a region holds only a-z 0-9 and -";
	return NULL;
}

/* The keys of each destination: its checker and whether it is required. */
struct rule {
	const char *dest, *key;
	const char *(*check)(const char *, size_t);
	int required;
};

static const struct rule rules[] = {
    {"github", "repo", sw_artifact_repo_refusal, 1},
    {"github", "branch", sw_artifact_branch_refusal, 0},
    {"s3", "bucket", sw_artifact_bucket_refusal, 1},
    {"s3", "prefix", sw_artifact_prefix_refusal, 0},
    {"s3", "endpoint", sw_artifact_endpoint_refusal, 0},
    {"s3", "region", sw_artifact_region_refusal, 0},
    {"local", "path", sw_artifact_path_refusal, 1},
};

static const char *keys_of(const char *dest)
{
	if (!strcmp(dest, "github"))
		return "destination, repo, branch";
	if (!strcmp(dest, "s3"))
		return "destination, bucket, prefix, endpoint, region";
	if (!strcmp(dest, "local"))
		return "destination, path";
	return "destination";
}

int sw_artifact_dest_parse(const char *s, enum sw_artifact_dest *d)
{
	static const char *const names[] = {"none", "github", "s3", "local"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*d = (enum sw_artifact_dest)i;
			return 0;
		}
	return -1;
}

const char *sw_artifact_key_refusal(const char *dest, const char *key, const char *value,
				    size_t len, const char **allowed)
{
	size_t i;

	*allowed = keys_of(dest);
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (!strcmp(rules[i].dest, dest) && !strcmp(rules[i].key, key))
			return value == NULL ? NULL : rules[i].check(value, len);
	return "is not a key of this destination";
}

const char *sw_artifact_missing(const char *dest, int (*has)(const char *key, void *arg),
				void *arg)
{
	size_t i;

	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rules[i].required && !strcmp(rules[i].dest, dest) && !has(rules[i].key, arg))
			return rules[i].key;
	return NULL;
}

static int json_has(const char *key, void *arg)
{
	return json_object_get(arg, key) != NULL;
}

int sw_artifact_check(json_t *spec, char *err, size_t errlen)
{
	enum sw_artifact_dest d;
	const char *dest, *key, *why, *allowed, *miss;
	json_t *v;

	if (!json_is_object(spec)) {
		snprintf(err, errlen, "artifact is not an object");
		return -1;
	}
	v = json_object_get(spec, "destination");
	if (!json_is_string(v) || sw_artifact_dest_parse(json_string_value(v), &d) != 0) {
		snprintf(err, errlen, "artifact.destination is not github, s3, local or none");
		return -1;
	}
	dest = json_string_value(v);
	json_object_foreach(spec, key, v) {
		if (!strcmp(key, "destination"))
			continue;
		if (!json_is_string(v)) {
			snprintf(err, errlen, "artifact.%.40s is not a string", key);
			return -1;
		}
		why = sw_artifact_key_refusal(dest, key, json_string_value(v),
					      json_string_length(v), &allowed);
		if (why != NULL) {
			snprintf(err, errlen, "artifact.%.40s %s%s (%s: %s)", key,
				 strstr(why, "is not a key") == why ? "" : "is refused: ", why,
				 dest, allowed);
			return -1;
		}
	}
	if ((miss = sw_artifact_missing(dest, json_has, spec)) != NULL) {
		snprintf(err, errlen, "artifact: destination %s needs %s", dest, miss);
		return -1;
	}
	return 0;
}
