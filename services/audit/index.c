/*
 * The index of the log in PostgreSQL (schema "audit"): one row per record,
 * by log id and seq (the instances of a group share the index, each writing
 * its own log's rows), with the event id, run id, type and Kafka
 * coordinates, and where the record lies on disk. Rows go in chunks through one INSERT ... SELECT
 * FROM unnest(...) ON CONFLICT DO NOTHING, which is idempotent, so the
 * store may resend it after a reconnect. The log is the truth: at start
 * the index is completed from it for every seq above the highest indexed,
 * so index rows need not wait for the disk (audit_index_items).
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"

static const char *const migration_1 =
	"CREATE TABLE events ("
	" seq bigint PRIMARY KEY,"
	" event_id uuid UNIQUE,"
	" run_id text,"
	" type text,"
	" topic text NOT NULL,"
	" kafka_partition int NOT NULL,"
	" kafka_offset bigint NOT NULL,"
	" time_us bigint NOT NULL,"
	" segment bigint NOT NULL,"
	" file_off bigint NOT NULL,"
	" kind smallint NOT NULL);"
	"CREATE INDEX events_run ON events (run_id, seq);"
	"CREATE INDEX events_topic ON events (topic, kafka_partition, kafka_offset);";

/*
 * Migration 2: the tenant of every event (header.tenant: the tenant id),
 * and the API keys the audit API accepts, learnt from the events of
 * sagewai.tenants (never from the scheduler's tables). A key row may
 * arrive revoked before it is known (revoked is sticky); key_hash is the
 * SHA-256 of the key, never the key.
 */
static const char *const migration_2 =
	"ALTER TABLE events ADD COLUMN tenant text;"
	"CREATE TABLE tenants ("
	" id text PRIMARY KEY,"
	" name text NOT NULL DEFAULT '',"
	" deleted boolean NOT NULL DEFAULT false);"
	"CREATE TABLE apikeys ("
	" key_id uuid PRIMARY KEY,"
	" key_hash bytea UNIQUE,"
	" tenant_id text NOT NULL DEFAULT '',"
	" role text NOT NULL DEFAULT '',"
	" revoked boolean NOT NULL DEFAULT false);";

/*
 * Migration 3: the log each row is of (the log-id file of its instance,
 * ingest.c), so that the audit instances of one consumer group share one
 * index: a seq is unique per log, an event id per log (the same event may
 * be in two logs when its partition moved before its offset was
 * committed). The rows indexed before keep log_id '' until their instance
 * adopts them at its next start (audit_index_adopt).
 */
static const char *const migration_3 =
	"ALTER TABLE events ADD COLUMN IF NOT EXISTS log_id text NOT NULL DEFAULT '';"
	"ALTER TABLE events DROP CONSTRAINT IF EXISTS events_pkey;"
	"ALTER TABLE events DROP CONSTRAINT IF EXISTS events_event_id_key;"
	"ALTER TABLE events ADD PRIMARY KEY (log_id, seq);"
	"CREATE UNIQUE INDEX IF NOT EXISTS events_log_event ON events (log_id, event_id);"
	"CREATE INDEX IF NOT EXISTS events_event ON events (event_id);"
	"DROP INDEX IF EXISTS events_run;"
	"CREATE INDEX IF NOT EXISTS events_log_run ON events (log_id, run_id, seq);";

/*
 * Migration 4: the Kafka coordinates are looked up only for raw records
 * (kind 2: a message that did not decode, whose place is its identity;
 * the dedupe lookup below), so only those rows are indexed by them. Every
 * event's row paid for that index: the widest of the table's five, a text
 * key in every insert.
 */
static const char *const migration_4 =
	"DROP INDEX IF EXISTS events_topic;"
	"CREATE INDEX IF NOT EXISTS events_raw ON events (topic, kafka_partition, kafka_offset)"
	" WHERE kind = 2;";

/*
 * Migration 5: one index of the event ids, not two. The lookup of old ids
 * (lookup_sql) names the id alone, and the uniqueness of an id per log
 * holds as well with the id first: (event_id, log_id) serves both, and
 * every event's row makes one random-key insert fewer (three index
 * entries a row instead of four; the partial index of raw records aside).
 */
static const char *const migration_5 =
    "CREATE UNIQUE INDEX IF NOT EXISTS events_event_log ON events (event_id, log_id);"
    "DROP INDEX IF EXISTS events_log_event;"
    "DROP INDEX IF EXISTS events_event;";

const struct sw_migration audit_migrations[] = {
    {1, migration_1}, {2, migration_2}, {3, migration_3}, {4, migration_4}, {5, migration_5},
};
const size_t audit_nmigrations = sizeof(audit_migrations) / sizeof(audit_migrations[0]);

#define INSERT_ROWS                                                                               \
	"INSERT INTO events (seq, event_id, run_id, type, topic, kafka_partition, kafka_offset,"  \
	" time_us, segment, file_off, kind, tenant, log_id)"                                      \
	" SELECT u.*, $13::text FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[],"    \
	" $5::text[], $6::int[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],"        \
	" $11::smallint[], $12::text[]) AS u"

/* Idempotent: rows already indexed are skipped. */
static const char *const insert_sql = INSERT_ROWS " ON CONFLICT DO NOTHING";

/*
 * The live rows' insert, without ON CONFLICT: a speculative insert probes
 * both unique indexes before it inserts and confirms each row after, about
 * a quarter of the index's backend CPU (docs/BENCHMARKS.md, "The audit
 * index's insert"). Live rows are new but for a resend after a reconnect
 * or a record seen twice; a unique violation (23505) rolls the chunk back
 * and it is sent again as insert_sql.
 */
static const char *const insert_new_sql = INSERT_ROWS;

#define NCOLS 12 /* the arrays; parameter NCOLS + 1 is the log id */

struct index_req {
	struct audit_env *env;
	size_t rows;
	uint64_t last_seq;
	int again;	   /* sent again as insert_sql */
	char *cols[NCOLS]; /* the arrays, kept for that */
};

static void index_req_free(struct index_req *r)
{
	int c;

	for (c = 0; c < NCOLS; c++)
		free(r->cols[c]);
	free(r);
}

static void index_done(PGresult *res, const char *err, void *opaque);

static int index_send(struct index_req *r, const char *sql)
{
	const char *params[NCOLS + 1];
	struct sw_store_stmt st[2] = {{"SET LOCAL synchronous_commit TO off", 0, NULL},
				      {sql, NCOLS + 1, params}};
	int c;

	for (c = 0; c < NCOLS; c++)
		params[c] = r->cols[c];
	params[NCOLS] = r->env->log_id;
	return sw_store_tx(r->env->store, st, 2, index_done, r);
}

static void index_done(PGresult *res, const char *err, void *opaque)
{
	struct index_req *r = opaque;
	struct audit_env *env = r->env;

	(void)res;
	if (err != NULL && !r->again && strncmp(err, "23505", 5) == 0) {
		r->again = 1;
		sw_metrics_counter_add(env->metrics, "sagewai_audit_index_resends_total",
				       "Index chunks sent again as idempotent inserts after a "
				       "unique violation",
				       1);
		if (index_send(r, insert_sql) == 0)
			return;
		err = "out of memory";
	}
	if (err != NULL) {
		/* not a connection problem (the store retries those): a row the
		 * schema refuses. The log keeps the record; say so loudly. */
		sw_log(SW_LOG_ERROR, "audit index insert failed", "error", err, NULL);
		sw_metrics_counter_add(env->metrics, "sagewai_audit_index_errors_total",
				       "Index inserts refused by PostgreSQL", 1);
	}
	/* a refused row is not in the index: an id of it that leaves the
	 * dedupe window is not found there (docs/AUDIT.md, Memory) */
	if (r->last_seq > env->indexed_seq) {
		env->indexed_seq = r->last_seq;
		audit_ingest_window(env);
	}
	if (err == NULL) {
		env->indexed_rows += r->rows;
		sw_metrics_gauge_set(env->metrics, "sagewai_audit_indexed_seq",
				     "Highest log seq sent to the index and confirmed",
				     (double)r->last_seq);
		audit_feed_wake(env, r->last_seq);
	}
	index_req_free(r);
}

/* Build the NCOLS array literals for items with kind != 0 and queue the
 * insert. Returns the number of rows. */
static size_t build_arrays(const struct audit_item *items, size_t n, struct sw_buf cols[NCOLS],
			   uint64_t *last_seq)
{
	size_t i, rows = 0;
	int c;

	for (c = 0; c < NCOLS; c++)
		sw_buf_add(&cols[c], "{", 1);
	for (i = 0; i < n; i++) {
		const struct audit_item *it = &items[i];
		char num[8][24], uuid[SW_UUID_STRLEN];
		int first = rows == 0;

		if (it->kind == 0)
			continue;
		snprintf(num[0], sizeof(num[0]), "%llu", (unsigned long long)it->seq);
		snprintf(num[1], sizeof(num[1]), "%d", it->partition);
		snprintf(num[2], sizeof(num[2]), "%lld", (long long)it->offset);
		snprintf(num[3], sizeof(num[3]), "%lld", (long long)it->time_us);
		snprintf(num[4], sizeof(num[4]), "%llu", (unsigned long long)it->segment);
		snprintf(num[5], sizeof(num[5]), "%llu", (unsigned long long)it->file_off);
		snprintf(num[6], sizeof(num[6]), "%d", it->kind);
		sw_uuid_format(it->id, uuid);
		sw_store_array_elem(&cols[0], num[0], first);
		sw_store_array_elem(&cols[1], it->kind == SW_ALOG_EVENT ? uuid : NULL, first);
		sw_store_array_elem(&cols[2], it->run_id[0] ? it->run_id : NULL, first);
		sw_store_array_elem(&cols[3], it->type[0] ? it->type : NULL, first);
		sw_store_array_elem(&cols[4], it->topic, first);
		sw_store_array_elem(&cols[5], num[1], first);
		sw_store_array_elem(&cols[6], num[2], first);
		sw_store_array_elem(&cols[7], num[3], first);
		sw_store_array_elem(&cols[8], num[4], first);
		sw_store_array_elem(&cols[9], num[5], first);
		sw_store_array_elem(&cols[10], num[6], first);
		sw_store_array_elem(&cols[11], it->kind == SW_ALOG_EVENT ? it->tenant : NULL,
				    first);
		*last_seq = it->seq;
		rows++;
	}
	for (c = 0; c < NCOLS; c++)
		sw_buf_add(&cols[c], "}", 1);
	return rows;
}

/* ---- the keys of the audit API, from sagewai.tenants ---------------------- */

static void keys_done(PGresult *res, const char *err, void *opaque)
{
	struct audit_env *env = opaque;

	(void)res;
	if (err != NULL) {
		sw_log(SW_LOG_ERROR, "audit: cannot apply a tenant or key event", "error", err, NULL);
		sw_metrics_counter_add(env->metrics, "sagewai_audit_index_errors_total",
				       "Index inserts refused by PostgreSQL", 1);
	}
}

/*
 * The statement a tenant.* or apikey.* event makes of the key tables, with
 * its parameters (pointing into ev or hexbuf); 0 when ev is none of them
 * or not acceptable (logged), else the number of parameters. Only the
 * scheduler's events count (header.producer; Kafka ACLs must keep anyone
 * else from producing to sagewai.tenants).
 */
static int keys_stmt(json_t *ev, const char **sql, const char *params[4])
{
	json_t *h = json_object_get(ev, "header");
	const char *type = json_string_value(json_object_get(h, "type"));
	const char *producer = json_string_value(json_object_get(h, "producer"));
	const char *key_id = json_string_value(json_object_get(ev, "key_id"));
	const char *tenant = json_string_value(json_object_get(ev, "tenant_id"));
	const char *name = json_string_value(json_object_get(ev, "name"));
	const char *role = json_string_value(json_object_get(ev, "role"));
	const char *hash = json_string_value(json_object_get(ev, "key_sha256"));

	if (type == NULL || (strncmp(type, "tenant.", 7) != 0 && strncmp(type, "apikey.", 7) != 0))
		return 0;
	if (producer == NULL || strcmp(producer, "sagewai-scheduler") != 0 || tenant == NULL) {
		sw_log(SW_LOG_ERROR, "audit: tenant or key event not from the scheduler ignored",
		       "type", type, NULL);
		return 0;
	}
	if (strcmp(type, "tenant.created") == 0 && name != NULL) {
		*sql = "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
		params[0] = tenant;
		params[1] = name;
		return 2;
	}
	if (strcmp(type, "tenant.deleted") == 0 && name != NULL) {
		*sql = "INSERT INTO tenants (id, name, deleted) VALUES ($1, $2, true)"
		       " ON CONFLICT (id) DO UPDATE SET deleted = true";
		params[0] = tenant;
		params[1] = name;
		return 2;
	}
	if (strcmp(type, "apikey.created") == 0 && key_id != NULL && role != NULL &&
	    hash != NULL && strlen(hash) == 64 &&
	    /* a tenant's id, or single_org's tenant "default" (its users' keys) */
	    ((strcmp(role, "TENANT") == 0 &&
	      (strlen(tenant) == 36 || strcmp(tenant, "default") == 0)) ||
	     (strcmp(role, "AUDITOR") == 0 && tenant[0] == '\0'))) {
		*sql = "INSERT INTO apikeys (key_id, key_hash, tenant_id, role)"
		       " VALUES ($1::uuid, decode($2, 'hex'), $3, $4) ON CONFLICT (key_id) DO UPDATE"
		       " SET key_hash = EXCLUDED.key_hash, tenant_id = EXCLUDED.tenant_id,"
		       " role = EXCLUDED.role";
		params[0] = key_id;
		params[1] = hash;
		params[2] = tenant;
		params[3] = role;
		return 4;
	}
	if (strcmp(type, "apikey.revoked") == 0 && key_id != NULL) {
		*sql = "INSERT INTO apikeys (key_id, tenant_id, revoked) VALUES ($1::uuid, $2, true)"
		       " ON CONFLICT (key_id) DO UPDATE SET revoked = true";
		params[0] = key_id;
		params[1] = tenant;
		return 2;
	}
	sw_log(SW_LOG_ERROR, "audit: malformed tenant or key event ignored", "type", type, NULL);
	return 0;
}

/* Apply the key-table effect of one logged event (payload), queued on the
 * store before its index row (one connection: in order, so an indexed seq
 * has had its effect), or at once when sync. 0, or -1 with errstr (sync). */
static int keys_apply(struct audit_env *env, const char *type, const void *payload, size_t len,
		      int sync, char *errstr, size_t errlen)
{
	const char *sql = NULL, *params[4];
	char err[256];
	PGresult *res;
	json_t *ev;
	int n, rc = 0;

	if (strncmp(type, "tenant.", 7) != 0 && strncmp(type, "apikey.", 7) != 0)
		return 0;
	if ((ev = sw_event_decode(env->reg, payload, len, err, sizeof(err))) == NULL)
		return 0; /* logged as an event, so it decoded once; a schema gone since */
	if ((n = keys_stmt(ev, &sql, params)) > 0) {
		if (!sync) {
			if (sw_store_query(env->store, sql, n, params, keys_done, env) == -1)
				sw_log(SW_LOG_ERROR, "audit: cannot queue a key event", NULL);
		} else if ((res = sw_store_exec_sync(env->store, sql, n, params, errstr, errlen)) ==
			   NULL) {
			rc = -1;
		} else {
			PQclear(res);
		}
	}
	json_decref(ev);
	return rc;
}

/*
 * Index rows are committed without waiting for the disk (synchronous_commit
 * off): the log is the truth and was synced before its records get here,
 * and a crash can lose only the newest commits (the WAL is flushed in
 * order), which the catch-up at start puts back from the log. The key
 * rows (keys_apply) stay durable commits, queued before their index row.
 */
void audit_index_items(struct audit_env *env, const struct audit_item *items, size_t n)
{
	size_t start, chunk, i;

	for (i = 0; i < n; i++)
		if (items[i].kind == SW_ALOG_EVENT)
			(void)keys_apply(env, items[i].type, items[i].payload, items[i].len, 0, NULL,
					 0);

	for (start = 0; start < n; start += chunk) {
		struct sw_buf cols[NCOLS] = {0};
		struct index_req *r = NULL;
		uint64_t last = 0;
		size_t rows;
		int c, oom = 0;

		chunk = n - start < AUDIT_INDEX_CHUNK ? n - start : AUDIT_INDEX_CHUNK;
		rows = build_arrays(items + start, chunk, cols, &last);
		for (c = 0; c < NCOLS; c++)
			oom |= cols[c].oom;
		if (rows > 0 && !oom && (r = calloc(1, sizeof(*r))) == NULL)
			oom = 1;
		if (r != NULL) {
			r->env = env;
			r->rows = rows;
			r->last_seq = last;
			for (c = 0; c < NCOLS; c++)
				r->cols[c] = sw_buf_steal(&cols[c], NULL);
			if (index_send(r, insert_new_sql) == -1) {
				index_req_free(r);
				oom = 1;
			}
		}
		if (oom)
			sw_log(SW_LOG_ERROR, "audit index: cannot queue rows", NULL);
		for (c = 0; c < NCOLS; c++)
			sw_buf_free(&cols[c]);
	}
}

void audit_index_flush(struct audit_env *env, int ms)
{
	struct timeval tv = {0, 50000};
	int64_t until = sw_mono_ms() + ms;

	while (env->store != NULL && env->base != NULL && sw_store_pending(env->store) > 0 &&
	       sw_mono_ms() < until) {
		event_base_loopexit(env->base, &tv);
		event_base_dispatch(env->base);
	}
}

/* Catch-up at start: records above the highest indexed seq, in chunks. */
struct catch_ctx {
	struct audit_env *env;
	struct audit_item *items;
	size_t n;
	uint64_t rows;
	char *err;
	size_t errlen;
};

static int flush_sync(struct catch_ctx *cc)
{
	struct sw_buf cols[NCOLS] = {0};
	const char *params[NCOLS + 1];
	uint64_t last = 0;
	PGresult *res = NULL;
	size_t i;
	int c, rc = -1, oom = 0;

	if (cc->n == 0)
		return 0;
	build_arrays(cc->items, cc->n, cols, &last);
	for (c = 0; c < NCOLS; c++) {
		oom |= cols[c].oom;
		params[c] = cols[c].p;
	}
	params[NCOLS] = cc->env->log_id;
	if (oom) {
		snprintf(cc->err, cc->errlen, "out of memory");
		goto out;
	}
	res = sw_store_exec_sync(cc->env->store, insert_sql, NCOLS + 1, params, cc->err,
				 cc->errlen);
	if (res == NULL)
		goto out;
	cc->rows += cc->n;
	rc = 0;
out:
	PQclear(res);
	for (c = 0; c < NCOLS; c++)
		sw_buf_free(&cols[c]);
	for (i = 0; i < cc->n; i++)
		free(cc->items[i].topic);
	cc->n = 0;
	return rc;
}

static int catch_rec(const struct sw_alog_rec *rec, void *opaque)
{
	struct catch_ctx *cc = opaque;
	struct audit_item *it;
	struct sw_event_header h;
	char err[128];

	if (rec->kind != SW_ALOG_EVENT && rec->kind != SW_ALOG_RAW)
		return 0;
	it = &cc->items[cc->n];
	memset(it, 0, sizeof(*it));
	if ((it->topic = strndup(rec->topic, rec->topic_len)) == NULL)
		return -1;
	it->kind = rec->kind;
	it->partition = rec->partition;
	it->offset = rec->offset;
	it->time_us = rec->time_us;
	it->seq = rec->seq;
	it->segment = rec->segment;
	it->file_off = rec->file_off;
	if (rec->kind == SW_ALOG_EVENT &&
	    sw_event_decode_header(cc->env->reg, rec->payload, rec->payload_len, &h, err,
				   sizeof(err)) == 0 &&
	    sw_uuid_parse(h.event_id, it->id) == 0) {
		snprintf(it->run_id, sizeof(it->run_id), "%s", h.run_id);
		snprintf(it->type, sizeof(it->type), "%s", h.type);
		snprintf(it->tenant, sizeof(it->tenant), "%s", h.tenant);
		if (keys_apply(cc->env, it->type, rec->payload, rec->payload_len, 1, cc->err,
			       cc->errlen) == -1) {
			free(it->topic);
			return -1;
		}
	} else {
		/* raw, or an event of a schema this binary lacks: index by place */
		it->kind = SW_ALOG_RAW;
		audit_raw_id(rec->topic, rec->topic_len, rec->partition, rec->offset, it->id);
	}
	cc->n++;
	if (cc->n == AUDIT_INDEX_CHUNK)
		return flush_sync(cc) == 0 ? 0 : -1;
	return 0;
}

int audit_index_adopt(struct audit_env *env, int empty, char *errstr, size_t errlen)
{
	const char *params[1] = {env->log_id};
	PGresult *res;
	uint64_t n;

	res = sw_store_exec_sync(env->store,
				 "SELECT coalesce(max(seq), 0) FROM events WHERE log_id = ''", 0,
				 NULL, errstr, errlen);
	if (res == NULL)
		return -1;
	n = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (n == 0)
		return 0;
	if (empty) {
		snprintf(errstr, errlen,
			 "the index holds %llu seqs of a log from before log ids, and this log is"
			 " empty: that log was lost, or this is not its index; refusing to start",
			 (unsigned long long)n);
		return -1;
	}
	res = sw_store_exec_sync(env->store, "UPDATE events SET log_id = $1 WHERE log_id = ''", 1,
				 params, errstr, errlen);
	if (res == NULL)
		return -1;
	sw_log(SW_LOG_INFO, "audit index: rows from before log ids adopted", "log_id",
	       env->log_id, "rows", PQcmdTuples(res), NULL);
	PQclear(res);
	return 0;
}

int audit_index_max_seq(struct audit_env *env, uint64_t *max, char *errstr, size_t errlen)
{
	const char *params[1] = {env->log_id};
	PGresult *res;

	res = sw_store_exec_sync(env->store,
				 "SELECT coalesce(max(seq), 0) FROM events WHERE log_id = $1", 1,
				 params, errstr, errlen);
	if (res == NULL)
		return -1;
	*max = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

int audit_index_catch_up(struct audit_env *env, char *errstr, size_t errlen)
{
	struct catch_ctx cc = {.env = env, .err = errstr, .errlen = errlen};
	uint64_t max;
	char nrows[24];
	int rc;

	if (audit_index_max_seq(env, &max, errstr, errlen) == -1)
		return -1;
	if ((cc.items = calloc(AUDIT_INDEX_CHUNK, sizeof(*cc.items))) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		return -1;
	}
	rc = sw_alog_scan(env->log_dir, max + 1, catch_rec, &cc, errstr, errlen);
	if (rc == 0)
		rc = flush_sync(&cc);
	else
		(void)flush_sync(&cc);
	free(cc.items);
	if (rc != 0)
		return -1;
	env->indexed_rows = cc.rows;
	snprintf(nrows, sizeof(nrows), "%llu", (unsigned long long)cc.rows);
	sw_log(SW_LOG_INFO, "audit index caught up", "rows", nrows, NULL);
	return 0;
}

/* ---- the dedupe window's lookups ---------------------------------------- */

/*
 * An id older than the dedupe window (dedupe.c) is looked up here. The
 * lookup keeps the order of the log: a batch with ids to ask about goes
 * to the writer only once the index answered (ingest.c holds the later
 * batches back meanwhile).
 */

/*
 * Which of the ids (events) and places (raw records) the index holds, in
 * any log of the instances sharing it (an old id another instance logged
 * is a duplicate of the union as well): one statement for the batch, on
 * the store's one connection, so it runs after every index insert queued
 * before it.
 */
static const char *const lookup_sql =
	"SELECT event_id::text, NULL::text, NULL::int, NULL::bigint FROM events"
	" WHERE event_id = ANY($1::uuid[])"
	" UNION ALL"
	" SELECT NULL::text, e.topic, e.kafka_partition, e.kafka_offset FROM events e"
	" JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS r(topic, p, o)"
	" ON e.topic = r.topic AND e.kafka_partition = r.p AND e.kafka_offset = r.o"
	" WHERE e.kind = 2";

struct lookup_req {
	struct audit_env *env;
	struct audit_batch *b;
};

static void lookup_done(PGresult *res, const char *err, void *opaque)
{
	struct lookup_req *r = opaque;
	struct audit_env *env = r->env;
	struct audit_batch *b = r->b;
	size_t i;
	int row, n;

	free(r);
	if (err != NULL) {
		/* not a lost connection (the store retries those): a bug */
		sw_service_fatal(env->svc, "dedupe lookup in the audit index failed", err);
		return;
	}
	n = PQntuples(res);
	for (i = 0; i < b->n; i++) {
		struct audit_item *it = &b->items[i];
		char uuid[SW_UUID_STRLEN], off[24], part[16];

		if (!it->lookup)
			continue;
		it->lookup = 0;
		sw_uuid_format(it->id, uuid);
		snprintf(off, sizeof(off), "%lld", (long long)it->offset);
		snprintf(part, sizeof(part), "%d", it->partition);
		for (row = 0; row < n; row++) {
			int ev = !PQgetisnull(res, row, 0), found;

			if (it->kind == SW_ALOG_EVENT)
				found = ev && strcmp(PQgetvalue(res, row, 0), uuid) == 0;
			else
				found = !ev && strcmp(PQgetvalue(res, row, 1), it->topic) == 0 &&
					strcmp(PQgetvalue(res, row, 2), part) == 0 &&
					strcmp(PQgetvalue(res, row, 3), off) == 0;
			if (!found)
				continue;
			free(it->payload);
			it->payload = NULL;
			it->kind = 0;
			env->duplicates++;
			sw_metrics_counter_add(env->metrics, "sagewai_audit_duplicates_total",
					       "Events dropped because their id is already in the log",
					       1);
			break;
		}
	}
	b->lookup = 0;
	audit_ingest_dispatch(env);
}

static void array_add(struct sw_buf *b, const char *v)
{
	if (b->len > 1)
		sw_buf_add(b, ",", 1);
	sw_buf_add(b, "\"", 1);
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			sw_buf_add(b, "\\", 1);
		sw_buf_add(b, v, 1);
	}
	sw_buf_add(b, "\"", 1);
}

void audit_dedupe_lookup(struct audit_env *env, struct audit_batch *b)
{
	struct sw_buf a[4] = {{0}};
	const char *params[4];
	struct lookup_req *r;
	size_t i;
	int c, oom = 0;

	for (c = 0; c < 4; c++)
		sw_buf_add(&a[c], "{", 1);
	for (i = 0; i < b->n; i++) {
		const struct audit_item *it = &b->items[i];
		char v[SW_UUID_STRLEN > 24 ? SW_UUID_STRLEN : 24];

		if (!it->lookup)
			continue;
		env->lookups++;
		if (it->kind == SW_ALOG_EVENT) {
			sw_uuid_format(it->id, v);
			array_add(&a[0], v);
			continue;
		}
		array_add(&a[1], it->topic);
		snprintf(v, sizeof(v), "%d", it->partition);
		array_add(&a[2], v);
		snprintf(v, sizeof(v), "%lld", (long long)it->offset);
		array_add(&a[3], v);
	}
	for (c = 0; c < 4; c++) {
		sw_buf_add(&a[c], "}", 1);
		oom |= a[c].oom;
		params[c] = a[c].p;
	}
	sw_metrics_gauge_set(env->metrics, "sagewai_audit_dedupe_lookups",
			     "Ids looked up in the index (older than the dedupe window)",
			     (double)env->lookups);
	r = oom ? NULL : calloc(1, sizeof(*r));
	if (r != NULL) {
		r->env = env;
		r->b = b;
		if (sw_store_query(env->store, lookup_sql, 4, params, lookup_done, r) == -1) {
			free(r);
			r = NULL;
		}
	}
	for (c = 0; c < 4; c++)
		sw_buf_free(&a[c]);
	if (r == NULL)
		sw_service_fatal(env->svc, "dedupe lookup", "out of memory");
}
