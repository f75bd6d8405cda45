/*
 * sw_test_http: plain HTTP calls to a service on the loopback (libcurl).
 */
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sw_test_svc.h"

size_t sw_test_http_collect(char *d, size_t sz, size_t nm, void *u)
{
	struct sw_test_buf *m = u;

	m->p = realloc(m->p, m->len + sz * nm + 1);
	SW_CHECK(m->p != NULL);
	memcpy(m->p + m->len, d, sz * nm);
	m->len += sz * nm;
	m->p[m->len] = '\0';
	return sz * nm;
}

void sw_test_http_request(const char *method, const char *url, const char *body, size_t len,
			  const char *const *headers, long timeout_s, struct sw_test_http_reply *r)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct sw_test_buf m = {0};

	SW_CHECK(c != NULL);
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (method != NULL)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sw_test_http_collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	if (timeout_s > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	for (; headers != NULL && *headers != NULL; headers++)
		SW_CHECK((h = curl_slist_append(h, *headers)) != NULL);
	if (h != NULL)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	r->status = 0;
	r->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	r->body = m.p;
}

char *sw_test_http_get(int port, const char *path, long *status)
{
	struct sw_test_http_reply r;
	char url[512];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	sw_test_http_request(NULL, url, NULL, 0, NULL, 30, &r);
	*status = r.rc == CURLE_OK ? r.status : 0;
	return r.body;
}

double sw_test_metric(const char *text, const char *name)
{
	const char *p = text;
	size_t n = strlen(name);

	while (p != NULL && (p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atof(p + n + 1);
		p += n;
	}
	return -1;
}

double sw_test_metric_get(int port, const char *name)
{
	long status;
	char *text = sw_test_http_get(port, "/metrics", &status);
	double v = status != 0 && text != NULL ? sw_test_metric(text, name) : -1;

	free(text);
	return v;
}

void sw_test_http_wait_healthy(int port, pid_t pid, const char *name)
{
	long status;
	int i;

	for (i = 0; i < 300; i++) {
		free(sw_test_http_get(port, "/healthz", &status));
		if (status == 200)
			return;
		SW_REQUIRE(sw_test_proc_running(pid), "%s exited at start", name);
		sw_test_msleep(100);
	}
	SW_REQUIRE(0, "%s did not answer /healthz", name);
}

int sw_test_port_free(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	SW_CHECK(fd >= 0);
	SW_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	SW_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}
