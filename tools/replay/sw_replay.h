/*
 * sw_replay: re-publish a range of the audit log to a Kafka topic, for
 * downstream consumers to reprocess (docs/AUDIT.md, "Replay: publish").
 *
 * A job reads the log with sw_alog_cursor from its first record, so the
 * whole chain is checked, up to the log's end as it is at the start (the
 * job's end seq), and the selection counted, before anything is sent; a
 * broken log is refused then, naming the record. The selected events are
 * held in memory meanwhile (up to hold_bytes; a larger selection is read
 * again, and checked again, after a first pass). Then each is produced,
 * unchanged (the exact stored bytes), in log order, with the Kafka key of
 * its original producers (header.run_id; none when it is empty), no
 * Kafka header unless o->mark, then one:
 *
 *     sagewai.replay  "ID/SEQ TOPIC/PARTITION/OFFSET": the job's id (a
 *                     UUIDv7, kept in the state) and the record's seq in the
 *                     log; where the audit service consumed the event
 *                     (topic names hold neither '/' nor ' ')
 *
 * through an idempotent producer (acks=all), so each key's events keep
 * their order in the target partition. Event ids are kept: a consumer that
 * deduplicates by id sees each event once even across jobs.
 *
 * Resuming. With a state file the job is resumable: it is written (and
 * fsync'd) before the first message, then every 200 ms and at the end,
 * atomically (rename). It records the job (id, target, selection, end seq
 * and that record's hash), the highest seq below which every selected event
 * is acknowledged by Kafka (delivery reports: every event up to it, not
 * merely the last one reported), and per target partition the offset
 * after the last such event. A rerun with the same state checks that the
 * log still holds the same records up to the end seq (the hash chain ends
 * in the same hash), reads the target partitions from those offsets to
 * their ends, and does not send again the selected events whose event id
 * (read from each message's value) it finds there: those the killed run
 * had delivered after its last state write. The event bytes are handed to
 * librdkafka without a copy and freed on their delivery report.
 * So a kill -9 at any point followed by a rerun leaves each event once in
 * the target topic.
 *
 * The library never prints, exits or reads the environment; it reports
 * progress through a callback.
 */
#ifndef SW_REPLAY_H
#define SW_REPLAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* One header, not one per field: each costs the producer an allocation
 * and its bytes on the wire, per message. */
#define SW_REPLAY_HDR "sagewai.replay"

/* Which events of the log a job publishes: all four must match. Only
 * events are published (records of kind SW_ALOG_EVENT); dead letters kept
 * raw and checkpoints are not. */
struct sw_replay_select {
	const char *run_id;	  /* header.run_id equals it; NULL: any */
	const char *const *types; /* header.type is one of them (NULL-terminated); NULL: any */
	int64_t since_us;	  /* header.time >= since_us; INT64_MIN: no bound */
	int64_t until_us;	  /* header.time < until_us; INT64_MAX: no bound */
};

struct sw_replay_progress {
	uint64_t total;	    /* events the job publishes (selected, up to end_seq) */
	uint64_t done;	    /* of them acknowledged by Kafka, in this run or before */
	uint64_t resumed;   /* of done, acknowledged before this run (state file) */
	uint64_t found;	    /* of done, found in the topic at resume (not sent again) */
	uint64_t sent;	    /* produced in this run */
	uint64_t end_seq;   /* the job's last log seq */
	uint64_t acked_seq; /* every selected event up to this seq is acknowledged */
	double elapsed_s;   /* of this run */
	double rate;	    /* events/s acknowledged in this run */
	int finished;	    /* the last report of the run */
	char replay_id[37];
};

typedef void (*sw_replay_progress_cb)(const struct sw_replay_progress *p, void *opaque);

struct sw_replay_opts {
	const char *log_dir;   /* the audit log directory */
	const char *bootstrap; /* Kafka bootstrap servers */
	const char *topic;     /* the target topic */
	int into_live;	       /* allow a target among the live sagewai.* topics */
	const char *state;     /* the state file (created when missing); NULL: no resume */
	double rate;	       /* at most this many events/s; 0: as fast as Kafka takes them */
	size_t hold_bytes;     /* events held in memory while the log is checked; 0: 256 MiB
				  (a larger selection makes a first pass of its own) */
	const char *const *kafka_extra; /* "name=value" librdkafka settings, NULL-ended, or NULL;
					   idempotence and acks=all cannot be changed */
	int mark;			/* add the header sagewai.replay to every message */
	struct sw_replay_select sel;
	sw_replay_progress_cb progress; /* may be NULL; called every progress_ms and at the end */
	int progress_ms;		/* 0: 1000 */
	void *opaque;
	const volatile sig_atomic_t *stop; /* may be NULL; when it turns non-zero the job
					      stops sending, waits for what is in flight and
					      saves its state (SW_REPLAY_STOPPED) */
};

enum sw_replay_rc {
	SW_REPLAY_OK = 0,
	SW_REPLAY_FAIL = 1,    /* Kafka, I/O, a state file that does not fit: errstr */
	SW_REPLAY_BROKEN = 2,  /* the log is broken: errstr names the record; nothing sent */
	SW_REPLAY_STOPPED = 3, /* *stop was set; the state is saved */
	SW_REPLAY_REFUSED = 4, /* bad options (a live topic without into_live, a bad name) */
};

/* Run (or resume) a job. *out (may be NULL) gets the last progress. */
enum sw_replay_rc sw_replay_publish(const struct sw_replay_opts *o, struct sw_replay_progress *out,
				    char *errstr, size_t errlen);

/* 1 when topic is one of the live topics (a name starting "sagewai."). */
int sw_replay_topic_is_live(const char *topic);

#endif
