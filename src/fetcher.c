/*-------------------------------------------------------------------------
 *
 * fetcher.c
 *		  Reading the pages of a sync's walk over the listing: in a fetcher
 *		  background worker that runs ahead of the sync, or in the sync's own
 *		  process.
 *
 * Storing a page takes the sync most of its time; fetching and checking the
 * next one (HTTP, the jansson check of its envelope, its conversion to jsonb)
 * takes the rest.  A fetcher does the latter on another core and hands each
 * page over a shm_mq as jsonb, so the sync only stores.  The fetcher sees the same options,
 * token and rate-limit window as the sync (copied into the DSM segment, and
 * the sends it makes travel back with each page); an error it raises is
 * raised again in the sync as it was, SQLSTATE, detail and context
 * included.  Without a free worker slot the sync reads the pages itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#define CRM_FETCH_MAGIC			0x43524D46
#define CRM_FETCH_KEY_HEADER	1
#define CRM_FETCH_KEY_QUEUE		2
#define CRM_FETCH_KEY_SENDS		3
/* Pages the fetcher may run ahead: about a dozen of 100 rows. */
#define CRM_FETCH_QUEUE_SIZE	(2 * 1024 * 1024)

/* What the sync tells its fetcher, in the DSM segment. */
typedef struct CrmFetchHeader
{
	Oid			dboid;
	Oid			userid;
	Oid			serverid;
	CrmServerOptions opts;		/* its strings are in strings[], not here */
	int64		hold_until_ms;
	int			nsent;			/* in the KEY_SENDS chunk, oldest first */
	/* servername, url, token, ca_file ("" = none), base: NUL-terminated */
	char		strings[FLEXIBLE_ARRAY_MEMBER];
} CrmFetchHeader;

/*
 * A message of the fetcher: a page, or the error that ended it, with the
 * requests made since the previous message (counters, send times).
 */
typedef struct CrmFetchMsg
{
	char		kind;			/* 'P' page, 'E' error */
	int			sqlerrcode;		/* of the error */
	bool		has_pagination;
	bool		last;
	int			pageno;
	int64		nrows;
	int64		total;
	int64		last_page;
	TimestampTz server_date;
	CrmHttpStats stats;
	int64		hold_until_ms;
	int			nsent;
	/*
	 * then int64 sent_ms[nsent], then the page's rows as jsonb, or the error's
	 * message, detail, detail_log, hint and context (flag byte + string)
	 */
} CrmFetchMsg;

/* The fetcher's end of the queue, and what it has reported so far. */
typedef struct CrmFetcher
{
	shm_mq_handle *mqh;
	CrmConnInfo *conn;
	CrmHttpStats stats;
	CrmHttpStats reported;
	int64		seen;			/* rate-limit sends reported */
	int64	   *sent_ms;
	int			max_sent;		/* crmHttpRateCapacity */
	bool		sending;		/* a message is part-sent */
} CrmFetcher;

struct CrmWalkReader
{
	CrmConnInfo *conn;
	char	   *base;
	CrmHttpStats *stats;
	int			pageno;			/* last page read */
	int64		last_page_seen; /* pagination.last_page of that page */
	bool		done;
	/* with a fetcher */
	dsm_segment *seg;
	shm_mq_handle *mqh;
	BackgroundWorkerHandle *handle;
};

/*
 * Replace each NUL character in the strings of value (an appointment of GET
 * path) by U+FFFD: PostgreSQL's text cannot hold it, and one such row would
 * stop every sync at its page.  Returns whether any was replaced.
 */
static bool
crm_sync_replace_nul(json_t *value)
{
	bool		replaced = false;

	check_stack_depth();
	if (json_is_string(value))
	{
		const char *str = json_string_value(value);
		size_t		len = json_string_length(value);
		StringInfoData buf;
		size_t		i;

		if (strlen(str) == len)
			return false;
		initStringInfo(&buf);
		for (i = 0; i < len; i++)
		{
			if (str[i] == '\0')
				appendBinaryStringInfo(&buf, "\xEF\xBF\xBD", 3);
			else
				appendStringInfoChar(&buf, str[i]);
		}
		json_string_setn(value, buf.data, buf.len);
		return true;
	}
	if (json_is_object(value))
	{
		const char *key;
		json_t	   *member;

		json_object_foreach(value, key, member)
			replaced |= crm_sync_replace_nul(member);
	}
	else if (json_is_array(value))
	{
		size_t		i;
		json_t	   *elem;

		json_array_foreach(value, i, elem)
			replaced |= crm_sync_replace_nul(elem);
	}
	return replaced;
}

/*
 * Check the shape of a response (jansson: duplicate keys are refused) and
 * read its pagination; returns the number of rows and, as jsonb, the array
 * of them crm._sync_pages takes: "data", or the object of GET
 * /appointments/{id} in an array, as crmParsePage reads it.  The parsed
 * document is gone on return (page->rows with it): a batch of them would
 * hold many megabytes.
 */
size_t
crmSyncReadPage(CrmHttpResponse *resp, const char *path, CrmPage *page,
				Jsonb **doc)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "crm_fdw sync page",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	const char *body = resp->body;
	size_t		len = resp->body_len;
	json_t	   *root = crmJsonParse(body, len, path);
	char	   *text = NULL;
	size_t		nrows;
	Jsonb	   *whole;
	JsonbValue	data;

	crmParsePage(root, CRM_RESOURCE_APPOINTMENTS, path, page);
	nrows = json_array_size(page->rows);
	/* rare: only then is the page re-encoded from the parsed document */
	if (memmem(body, len, "\\u0000", 6) != NULL)
	{
		size_t		i;
		json_t	   *row;
		bool		replaced = false;

		json_array_foreach(page->rows, i, row)
		{
			if (crm_sync_replace_nul(row))
			{
				json_t	   *id = json_object_get(row, "id");

				replaced = true;
				ereport(WARNING,
						(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
						 errmsg("appointment %s of GET %s holds the character U+0000; it is stored as U+FFFD",
								json_is_integer(id) ? psprintf("%lld", (long long) json_integer_value(id)) : "without an id",
								path),
						 errdetail("PostgreSQL text cannot hold U+0000.")));
			}
		}
		/* the envelope too (a field the contract lets the API add), silently */
		if (crm_sync_replace_nul(root))
			replaced = true;
		if (replaced)
		{
			text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
			if (text == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory re-encoding the response of GET %s", path)));
		}
	}
	page->rows = NULL;
	MemoryContextSwitchTo(old);

	/* the body is NUL-terminated, and jansson refused NUL bytes in it */
	crmJsonSkipBom(&body, &len);
	whole = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text ? text : body)));
	MemoryContextDelete(cxt);
	if (getKeyJsonValueFromContainer(&whole->root, "data", 4, &data) == NULL ||
		data.type != jbvBinary)
		elog(ERROR, "crm_fdw: \"data\" of GET %s changed between two parses", path);
	if (JsonContainerIsObject(data.val.binary.data))
	{
		JsonbParseState *state = NULL;

		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		pushJsonbValue(&state, WJB_ELEM, &data);
		*doc = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_ARRAY, NULL));
	}
	else
		*doc = JsonbValueToJsonb(&data);
	pfree(whole);
	return nrows;
}

/*
 * Fetch and check the next page in this process; the next page's request is
 * sent ahead, so the server prepares it while this one is handled: before
 * the parse when the last pagination seen says it exists, else after it.
 */
static void
crm_walk_fetch(CrmWalkReader *walk, CrmWalkPage *page)
{
	char	   *path = psprintf("%s&page=%d", walk->base, walk->pageno + 1);
	char	   *next = psprintf("%s&page=%d", walk->base, walk->pageno + 2);
	CrmHttpResponse resp;
	CrmPage		p;
	bool		ahead;

	crmHttpGet(walk->conn, path, false, &resp, walk->stats);
	walk->pageno++;
	ahead = walk->pageno < walk->last_page_seen;
	if (ahead)
		crmHttpPrefetch(walk->conn, next);
	page->pageno = walk->pageno;
	page->nrows = crmSyncReadPage(&resp, path, &p, &page->doc);
	pfree(resp.body);
	page->has_pagination = p.has_pagination;
	page->total = p.total;
	page->last_page = p.last_page;
	page->server_date = resp.server_date;
	if (p.has_pagination)
	{
		page->last = walk->pageno >= p.last_page;
		walk->last_page_seen = p.last_page;
	}
	else
		page->last = page->nrows < (size_t) walk->conn->opts.page_size;
	page->last = page->last || page->nrows == 0;
	if (!page->last && !ahead)
		crmHttpPrefetch(walk->conn, next);
}

/* On the sync's side: the fetcher goes when its segment does, error or not. */
static void
crm_walk_on_detach(dsm_segment *seg, Datum arg)
{
	TerminateBackgroundWorker((BackgroundWorkerHandle *) DatumGetPointer(arg));
}

static void
crm_walk_start_fetcher(CrmWalkReader *walk)
{
	CrmConnInfo *conn = walk->conn;
	const char *strs[5];
	Size		strings_len = 0;
	Size		header_size;
	shm_toc_estimator e;
	dsm_segment *seg;
	shm_toc    *toc;
	CrmFetchHeader *hdr;
	shm_mq	   *mq;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	int64		seen = 0;
	int			max_sent = crmHttpRateCapacity(conn);
	int64	   *sent_ms;
	MemoryContext oldcxt;
	bool		registered;
	char	   *p;
	int			i;

	strs[0] = conn->servername;
	strs[1] = conn->opts.url;
	strs[2] = conn->token;
	strs[3] = conn->opts.ca_file ? conn->opts.ca_file : "";
	strs[4] = walk->base;
	for (i = 0; i < lengthof(strs); i++)
		strings_len += strlen(strs[i]) + 1;
	header_size = offsetof(CrmFetchHeader, strings) + strings_len;

	shm_toc_initialize_estimator(&e);
	shm_toc_estimate_chunk(&e, header_size);
	shm_toc_estimate_chunk(&e, CRM_FETCH_QUEUE_SIZE);
	shm_toc_estimate_chunk(&e, sizeof(int64) * max_sent);
	shm_toc_estimate_keys(&e, 3);
	seg = dsm_create(shm_toc_estimate(&e), DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
		return;
	/* the walk spans many transactions */
	dsm_pin_mapping(seg);
	toc = shm_toc_create(CRM_FETCH_MAGIC, dsm_segment_address(seg), shm_toc_estimate(&e));

	hdr = shm_toc_allocate(toc, header_size);
	hdr->dboid = MyDatabaseId;
	hdr->userid = GetUserId();
	hdr->serverid = conn->serverid;
	hdr->opts = conn->opts;
	sent_ms = shm_toc_allocate(toc, sizeof(int64) * max_sent);
	hdr->nsent = crmHttpRateExport(conn, &seen, sent_ms, max_sent, &hdr->hold_until_ms);
	shm_toc_insert(toc, CRM_FETCH_KEY_SENDS, sent_ms);
	p = hdr->strings;
	for (i = 0; i < lengthof(strs); i++)
	{
		strcpy(p, strs[i]);
		p += strlen(strs[i]) + 1;
	}
	shm_toc_insert(toc, CRM_FETCH_KEY_HEADER, hdr);
	mq = shm_mq_create(shm_toc_allocate(toc, CRM_FETCH_QUEUE_SIZE), CRM_FETCH_QUEUE_SIZE);
	shm_toc_insert(toc, CRM_FETCH_KEY_QUEUE, mq);
	shm_mq_set_receiver(mq, MyProc);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "crm_fetcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "crm_fdw fetcher for server %s", conn->servername);
	snprintf(worker.bgw_type, BGW_MAXLEN, "crm_fdw fetcher");
	/* the handle must outlive whatever context the caller is in: see on_dsm_detach */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(oldcxt);
	if (!registered)
	{
		ereport(DEBUG1,
				(errmsg("no background worker slot for a crm_fdw fetcher; the sync reads its pages itself"),
				 errhint("Raise max_worker_processes.")));
		dsm_detach(seg);
		return;
	}
	walk->handle = handle;
	on_dsm_detach(seg, crm_walk_on_detach, PointerGetDatum(handle));
	walk->seg = seg;
	walk->mqh = shm_mq_attach(mq, seg, handle);
}

CrmWalkReader *
crmWalkBegin(CrmConnInfo *conn, const char *base, bool use_fetcher,
			 CrmHttpStats *stats)
{
	CrmWalkReader *walk = palloc0(sizeof(CrmWalkReader));

	walk->conn = conn;
	walk->base = pstrdup(base);
	walk->stats = stats;
	if (use_fetcher)
		crm_walk_start_fetcher(walk);
	return walk;
}

/* Raise, in the sync, the error that ended its fetcher. */
static void
crm_walk_rethrow(const char *p, const char *end, int sqlerrcode)
{
	ErrorData	edata;
	char	   *fields[5];
	int			i;

	for (i = 0; i < lengthof(fields); i++)
	{
		bool		present = p < end && *p++ != 0;

		fields[i] = present ? pstrdup(p) : NULL;
		if (present)
			p += strlen(p) + 1;
	}
	memset(&edata, 0, sizeof(edata));
	edata.elevel = ERROR;
	edata.sqlerrcode = sqlerrcode;
	edata.message = fields[0] ? fields[0] : "crm_fdw fetcher failed";
	edata.detail = fields[1];
	edata.detail_log = fields[2];
	edata.hint = fields[3];
	edata.context = fields[4];
	ThrowErrorData(&edata);
	pg_unreachable();
}

void
crmWalkNext(CrmWalkReader *walk, CrmWalkPage *page)
{
	CrmFetchMsg msg;
	shm_mq_result res;
	Size		nbytes;
	void	   *data;
	int64	   *sent_ms;
	char	   *payload;
	Size		payload_len;

	CHECK_FOR_INTERRUPTS();
	Assert(!walk->done);
	if (walk->seg == NULL)
	{
		crm_walk_fetch(walk, page);
		walk->done = page->last;
		return;
	}

	res = shm_mq_receive(walk->mqh, &nbytes, &data, false);
	if (res != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("the crm_fdw fetcher of server \"%s\" stopped before the last page",
						walk->conn->servername),
				 errdetail("It read pages up to page %d of %s; the server log says why it stopped.",
						   walk->pageno, walk->base)));
	Assert(nbytes >= sizeof(msg));
	memcpy(&msg, data, sizeof(msg));
	sent_ms = palloc(sizeof(int64) * Max(msg.nsent, 1));
	memcpy(sent_ms, (char *) data + sizeof(msg), sizeof(int64) * msg.nsent);
	crmHttpRateImport(walk->conn, sent_ms, msg.nsent, msg.hold_until_ms);
	pfree(sent_ms);
	walk->stats->requests += msg.stats.requests;
	walk->stats->retries += msg.stats.retries;
	walk->stats->pages += msg.stats.pages;
	walk->stats->bytes += msg.stats.bytes;
	walk->stats->rate_limited += msg.stats.rate_limited;

	payload = (char *) data + sizeof(msg) + sizeof(int64) * msg.nsent;
	payload_len = nbytes - sizeof(msg) - sizeof(int64) * msg.nsent;
	if (msg.kind == 'E')
		crm_walk_rethrow(payload, payload + payload_len, msg.sqlerrcode);

	/* the queue reuses its buffer: the document is the caller's now */
	page->doc = palloc(payload_len);
	memcpy(page->doc, payload, payload_len);
	page->pageno = walk->pageno = msg.pageno;
	page->nrows = (size_t) msg.nrows;
	page->has_pagination = msg.has_pagination;
	page->total = msg.total;
	page->last_page = msg.last_page;
	page->server_date = msg.server_date;
	page->last = msg.last;
	walk->done = msg.last;
}

void
crmWalkEnd(CrmWalkReader *walk)
{
	if (walk == NULL)
		return;
	if (walk->seg != NULL)
	{
		/* a fetcher that sent the last page is leaving by itself */
		if (walk->done)
			cancel_on_dsm_detach(walk->seg, crm_walk_on_detach,
								 PointerGetDatum(walk->handle));
		/* before the segment goes: it frees the handle and its buffer */
		shm_mq_detach(walk->mqh);
		dsm_detach(walk->seg);
		pfree(walk->handle);
	}
	pfree(walk->base);
	pfree(walk);
}

/* ---------- the fetcher worker ---------- */

static void
crm_fetcher_append_field(StringInfo buf, const char *s)
{
	appendStringInfoChar(buf, s != NULL);
	if (s != NULL)
		appendBinaryStringInfo(buf, s, strlen(s) + 1);
}

/* Send msg and its payload, with the requests made since the last message. */
static shm_mq_result
crm_fetcher_send(CrmFetcher *f, CrmFetchMsg *msg, const char *payload, Size len)
{
	shm_mq_iovec iov[3];
	shm_mq_result res;

	msg->stats.requests = f->stats.requests - f->reported.requests;
	msg->stats.retries = f->stats.retries - f->reported.retries;
	msg->stats.pages = f->stats.pages - f->reported.pages;
	msg->stats.bytes = f->stats.bytes - f->reported.bytes;
	msg->stats.rate_limited = f->stats.rate_limited - f->reported.rate_limited;
	f->reported = f->stats;
	msg->nsent = crmHttpRateExport(f->conn, &f->seen, f->sent_ms, f->max_sent,
								   &msg->hold_until_ms);
	iov[0].data = (char *) msg;
	iov[0].len = sizeof(CrmFetchMsg);
	iov[1].data = (char *) f->sent_ms;
	iov[1].len = sizeof(int64) * msg->nsent;
	iov[2].data = payload;
	iov[2].len = len;
	f->sending = true;
	res = shm_mq_sendv(f->mqh, iov, 3, false, true);
	f->sending = false;
	return res;
}

/* Send the error being handled to the sync, which raises it as its own. */
static void
crm_fetcher_send_error(CrmFetcher *f)
{
	ErrorData  *edata = CopyErrorData();
	StringInfoData buf;
	CrmFetchMsg msg;

	FlushErrorState();
	initStringInfo(&buf);
	crm_fetcher_append_field(&buf, edata->message);
	crm_fetcher_append_field(&buf, edata->detail);
	crm_fetcher_append_field(&buf, edata->detail_log);
	crm_fetcher_append_field(&buf, edata->hint);
	crm_fetcher_append_field(&buf, edata->context);
	memset(&msg, 0, sizeof(msg));
	msg.kind = 'E';
	msg.sqlerrcode = edata->sqlerrcode;
	(void) crm_fetcher_send(f, &msg, buf.data, buf.len);
}

/*
 * Read the walk's pages and send each to the sync, until the last one, an
 * error (sent instead) or the sync's leaving.
 */
static void
crm_fetcher_run(CrmFetcher *f, const char *base)
{
	CrmWalkReader *walk = crmWalkBegin(f->conn, base, false, &f->stats);
	MemoryContext page_cxt = AllocSetContextCreate(TopMemoryContext,
												   "crm_fdw fetcher page",
												   ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		CrmWalkPage page;
		CrmFetchMsg msg;

		do
		{
			MemoryContext old;

			MemoryContextReset(page_cxt);
			old = MemoryContextSwitchTo(page_cxt);
			pgstat_report_activity(STATE_RUNNING,
								   psprintf("crm_fdw fetcher: page %d of server \"%s\"",
											walk->pageno + 1, f->conn->servername));
			crm_walk_fetch(walk, &page);
			MemoryContextSwitchTo(old);

			memset(&msg, 0, sizeof(msg));
			msg.kind = 'P';
			msg.pageno = page.pageno;
			msg.has_pagination = page.has_pagination;
			msg.last = page.last;
			msg.nrows = (int64) page.nrows;
			msg.total = page.total;
			msg.last_page = page.last_page;
			msg.server_date = page.server_date;
			/* detached: the sync stopped wanting pages */
			if (crm_fetcher_send(f, &msg, (char *) page.doc, VARSIZE(page.doc)) != SHM_MQ_SUCCESS)
				break;
		} while (!page.last);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(TopMemoryContext);
		crmHttpCancelPrefetch();
		if (f->sending)
		{
			/*
			 * Raised inside shm_mq_sendv (the fetcher was cancelled while the
			 * queue was full): the queue is mid-message and nothing else may
			 * follow.  The sync reports that its fetcher stopped; the log
			 * says why.
			 */
			EmitErrorReport();
			FlushErrorState();
		}
		else
			crm_fetcher_send_error(f);
	}
	PG_END_TRY();
	crmHttpCancelPrefetch();
}

void
crm_fetcher_main(Datum arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	CrmFetchHeader *hdr;
	shm_mq	   *mq;
	CrmFetcher	f;
	CrmConnInfo *conn;
	int64		hold_until_ms;
	const char *p;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		return;					/* the sync is gone already */
	toc = shm_toc_attach(CRM_FETCH_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		elog(ERROR, "crm_fdw fetcher: bad magic number in its shared memory segment");
	hdr = shm_toc_lookup(toc, CRM_FETCH_KEY_HEADER, false);
	mq = shm_toc_lookup(toc, CRM_FETCH_KEY_QUEUE, false);
	shm_mq_set_sender(mq, MyProc);
	memset(&f, 0, sizeof(f));
	f.mqh = shm_mq_attach(mq, seg, NULL);

	/* to be seen in pg_stat_activity, beside its sync */
	BackgroundWorkerInitializeConnectionByOid(hdr->dboid, hdr->userid, 0);

	conn = palloc0(sizeof(CrmConnInfo));
	conn->serverid = hdr->serverid;
	conn->opts = hdr->opts;
	p = hdr->strings;
	conn->servername = pstrdup(p);
	p += strlen(p) + 1;
	conn->opts.url = pstrdup(p);
	p += strlen(p) + 1;
	conn->token = pstrdup(p);
	p += strlen(p) + 1;
	conn->opts.ca_file = *p ? pstrdup(p) : NULL;
	p += strlen(p) + 1;
	f.conn = conn;
	f.max_sent = crmHttpRateCapacity(conn);
	f.sent_ms = palloc(sizeof(int64) * f.max_sent);
	crmHttpRateImport(conn, shm_toc_lookup(toc, CRM_FETCH_KEY_SENDS, false), hdr->nsent,
					  hdr->hold_until_ms);
	/* hand back only our own sends: the sync has those it handed us */
	(void) crmHttpRateExport(conn, &f.seen, f.sent_ms, 0, &hold_until_ms);

	crm_fetcher_run(&f, p);
	dsm_detach(seg);
}
