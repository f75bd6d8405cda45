/*
 * privmsg.h: the messages between sandboxd's two parts (priv.c), in the
 * manner of OpenBSD's privsep daemons: fixed, length-checked binary
 * messages, one per SOCK_SEQPACKET datagram, instead of JSON parsed as
 * root. Both sides encode and decode with this module; the privileged
 * part decodes only what sbd_pm_decode accepted.
 *
 * Every message: a 10-byte header, then the body (integers big-endian)
 *   type u16 | length u32 (header + body, == the datagram's size) | id u32
 * Bodies (strings: u16 length, then that many bytes, no NUL in them):
 *   CREATE     net u8 | limits 8 x u64 (0: the variant's) | variant str
 *   DESTROY    handle u64
 *   CREATED    handle u64 | pid u32 | start_us u64 | limits 8 x u64
 *              (+ SCM_RIGHTS: the runner's control socket; for egress_only
 *              also the egress listener)
 *   DESTROYED  utime_us u64 | stime_us u64 | maxrss_kb u64 | oom u8 (0|1)
 *   ERROR      text str
 * A message whose length disagrees with the datagram, whose body is
 * shorter or longer than its type's, whose string overruns its cap or
 * holds a NUL, or whose type is unknown is refused whole.
 */
#ifndef SBD_PRIVMSG_H
#define SBD_PRIVMSG_H

#include <stddef.h>
#include <stdint.h>

#define SBD_PM_HDR 10
#define SBD_PM_MAX 1024		/* the largest message of any type */
#define SBD_PM_VARIANT_MAX 64	/* a variant's name */
#define SBD_PM_TEXT_MAX 700	/* an error's text */
#define SBD_PM_LIMITS 8
#define SBD_PM_NET_MAX 2	/* enum sw_sandbox_net's last value */

enum sbd_pm_type {
	SBD_PM_CREATE = 1,
	SBD_PM_DESTROY = 2,
	SBD_PM_CREATED = 3,
	SBD_PM_DESTROYED = 4,
	SBD_PM_ERROR = 5,
};

/* The limits in their wire order (struct sw_sandbox_limits' field names). */
extern const char *const sbd_pm_limit_names[SBD_PM_LIMITS];

struct sbd_pm {
	uint16_t type;
	uint32_t id;
	union {
		struct {
			uint8_t net;
			uint64_t limits[SBD_PM_LIMITS];
			char variant[SBD_PM_VARIANT_MAX + 1];
		} create;
		struct {
			uint64_t handle;
		} destroy;
		struct {
			uint64_t handle;
			uint32_t pid;
			uint64_t start_us;
			uint64_t limits[SBD_PM_LIMITS];
		} created;
		struct {
			uint64_t utime_us, stime_us, maxrss_kb;
			uint8_t oom_killed;
		} destroyed;
		struct {
			char text[SBD_PM_TEXT_MAX + 1];
		} error;
	} u;
};

/* m -> buf. The length written, or 0 (a field out of range: a net over
 * SBD_PM_NET_MAX, a string over its cap, oom_killed not 0 or 1, an unknown
 * type, or buf too small). */
size_t sbd_pm_encode(const struct sbd_pm *m, uint8_t *buf, size_t buflen);

/* One datagram of n bytes -> *m. 0, or -1 with err (m's contents then
 * unspecified). Strings come out NUL-terminated. */
int sbd_pm_decode(const uint8_t *p, size_t n, struct sbd_pm *m, char *err, size_t errlen);

/*
 * privwire.c: the messages on the socket, for both parts. Sockets are
 * non-blocking; nothing here waits.
 */
#include <sys/queue.h>
#include <sys/types.h>

/* One encoded message (and the fds it carries, owned) not sent yet. */
struct sbd_pm_out {
	TAILQ_ENTRY(sbd_pm_out) entry;
	size_t len;
	int nfds;
	int fds[2];
	uint8_t buf[SBD_PM_MAX];
};
TAILQ_HEAD(sbd_pm_outq, sbd_pm_out);

/* Queue m with nfds fds (taken: closed once sent or dropped). 0, or -1
 * (m does not encode, or out of memory; the fds are closed then). */
int sbd_pm_queue(struct sbd_pm_outq *q, const struct sbd_pm *m, const int *fds, int nfds);
/* Send what the socket takes now. 0 (the queue is empty, or the rest must
 * wait for the socket to be writable: check TAILQ_EMPTY), or -1 with errno
 * (the peer is gone). */
int sbd_pm_flush(int sock, struct sbd_pm_outq *q);
void sbd_pm_outq_free(struct sbd_pm_outq *q);
/*
 * Receive one datagram into buf (cap bytes), with up to 2 fds into fds[]
 * (-1 when absent). Its length, 0 at EOF, -1 with errno (EAGAIN: nothing
 * now; EBADMSG: a truncated datagram or one with more than 2 fds, whose
 * fds are closed). flags: MSG_DONTWAIT or 0.
 */
ssize_t sbd_pm_recv_raw(int sock, uint8_t *buf, size_t cap, int fds[2], int flags);
/* One message: 1, 0 at EOF, -1 (errno; EBADMSG with err for a message
 * sbd_pm_decode refused, m->id then its header's id or 0). */
int sbd_pm_recv(int sock, struct sbd_pm *m, int fds[2], int flags, char *err, size_t errlen);
/* One datagram with fds, at once (for a reply that must not wait). */
int sbd_pm_send_raw(int sock, const void *buf, size_t len, const int *fds, int nfds);

/* Limit i (wire order, sbd_pm_limit_names) of a struct sw_sandbox_limits. */
struct sw_sandbox_limits;
uint64_t sbd_pm_limit_get(const struct sw_sandbox_limits *l, int i);
void sbd_pm_limit_set(struct sw_sandbox_limits *l, int i, uint64_t v);

#endif
