/*-------------------------------------------------------------------------
 *
 * sync.c
 *		  The sync engine: an incremental (or full) copy of one server's
 *		  appointments into crm.appointments, run inside a background worker.
 *
 * Correctness rests on four rules, each a reply to something the API does
 * not promise (see shared/api/CONTRACT.md):
 *	- The cursor is a remote updated_at, never our clock, and requests ask
 *	  for updated_after = cursor - 1 s, so a strict or inclusive remote, and
 *	  rows sharing one timestamp across pages, are all covered.
 *	- Pages are stored in batches of about CRM_SYNC_BATCH_ROWS rows, each
 *	  batch in its own transaction, but the cursor moves only at the end of a
 *	  complete walk, and never past the API's clock at the start of the walk
 *	  (page 1's Date header less its round trip; without a Date, the newest
 *	  row seen less the walk's duration): a row changed while we walk, which
 *	  an unstable order may have hidden from us, is newer than that and is
 *	  read next time.
 *	- An unchanged row can only be skipped when a row before our position
 *	  leaves it: moved behind us by an update (we then see its id again,
 *	  changed; an id seen again unchanged was only shifted forward),
 *	  deleted (pagination.total shrinks), or moved ahead of our position
 *	  (the walk sees fewer rows than its first page's total).  Such a walk is
 *	  unsettled: it is read again from the same cursor, and if the listing
 *	  keeps moving, the cursor stays where it was.  Not detected: a delete
 *	  and an insert between the same two pages, whose total holds; the row
 *	  skipped then waits for the next full sync.
 *	- Storing pages (crm._sync_pages) never overwrites a newer version with an
 *	  older one (but for a row the remote had lost: missing_remote) and writes
 *	  nothing for unchanged rows.
 * A full sync also lists every id and checks each local row it did not see
 * with GET /appointments/{id} before marking it missing_remote.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Advisory lock space of crm_fdw: (this, server oid) is held while a server syncs. */
#define CRM_SYNC_LOCK_CLASS		0x43524D31
/* Walks of one sync while the listing keeps moving under it. */
#define CRM_SYNC_MAX_WALKS		3
/* GETs by id failing one after another: the remote is failing, not the rows. */
#define CRM_SYNC_MAX_ID_FAILURES	3
/*
 * Rows stored per transaction and statement: the triggers and statements
 * cost less per row in bigger sets, and a batch of pages in memory is
 * still about a megabyte.
 */
#define CRM_SYNC_BATCH_ROWS		1000

/* One run of the sync. */
typedef struct CrmSyncRun
{
	Oid			serverid;
	char	   *server;
	CrmSyncMode mode;
	int64		log_id;
	CrmConnInfo *conn;
	bool		has_cursor;
	TimestampTz cursor;

	/* what the run did, written to crm.sync_log */
	int64		fetched;
	int64		created;
	int64		updated;
	int64		unchanged;
	int64		failed;
	int64		missing;
	int64		failed_without_id;	/* cannot be retried by id: hold the cursor */
	int64		duplicates;		/* ids seen again in the current walk */
	int64		changed_repeats;	/* of them, ids seen again changed */
	int			pages_done;
	int			pages_total;
	CrmHttpStats http;
	CrmWalkReader *walk;		/* the walk in progress */
} CrmSyncRun;

/* Begin a transaction with SPI and a snapshot, as worker_spi does. */
static void
crm_sync_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
crm_sync_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Run a statement with parameters; expect rc. */
static void
crm_sync_exec(const char *sql, int nargs, Oid *types, Datum *values,
			  const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "crm_fdw sync: unexpected SPI result %d for: %s", rc, sql);
}

/* Column col of the first result row as int64 (int4 or int8 or bool), 0 when NULL. */
static int64
crm_sync_int8(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	if (isnull)
		return 0;
	switch (SPI_gettypeid(SPI_tuptable->tupdesc, col))
	{
		case INT4OID:
			return DatumGetInt32(d);
		case BOOLOID:
			return DatumGetBool(d) ? 1 : 0;
		default:
			return DatumGetInt64(d);
	}
}

static void
crm_sync_lock_args(Oid serverid, Datum *values, Oid *types)
{
	types[0] = INT4OID;
	types[1] = INT4OID;
	values[0] = Int32GetDatum(CRM_SYNC_LOCK_CLASS);
	values[1] = Int32GetDatum((int32) serverid);
}

/*
 * Mark the 'running' rows of a server failed, when no process holds its
 * lock: they were left by a sync that died (crash, SIGKILL, immediate stop).
 * Called with the lock held, or from crmMarkInterruptedRuns.
 */
static void
crm_sync_mark_stale(const char *server)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(server);
	crm_sync_exec("UPDATE crm.sync_log SET status = 'failed', sync_completed_at = clock_timestamp(),"
				  " error_message = 'interrupted: the sync process stopped before it finished'"
				  " WHERE server_name = $1 AND status = 'running'",
				  1, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * At scheduler start: close the runs a crash left open.  A server whose lock
 * is taken is syncing right now and is left alone.
 */
void
crmMarkInterruptedRuns(void)
{
	uint64		i;
	List	   *servers = NIL;
	ListCell   *lc;

	crm_sync_begin("crm_fdw: closing interrupted syncs");
	if (SPI_execute("SELECT DISTINCT l.server_name, s.oid FROM crm.sync_log l"
					" JOIN pg_foreign_server s ON s.srvname = l.server_name"
					" WHERE l.status = 'running'", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list running syncs");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));

		servers = lappend(servers, list_make2(makeString(MemoryContextStrdup(TopTransactionContext, name)),
											  makeInteger((int) oid)));
	}
	foreach(lc, servers)
	{
		char	   *name = strVal(linitial((List *) lfirst(lc)));
		Oid			oid = (Oid) intVal(lsecond((List *) lfirst(lc)));
		Oid			types[2];
		Datum		values[2];

		crm_sync_lock_args(oid, values, types);
		crm_sync_exec("SELECT pg_try_advisory_xact_lock($1, $2)", 2, types, values, NULL, SPI_OK_SELECT);
		if (crm_sync_int8(1) != 0)
			crm_sync_mark_stale(name);
	}
	crm_sync_commit();
}

/* Write the run's counters into its crm.sync_log row. */
static void
crm_sync_log_progress(CrmSyncRun *run)
{
	Oid			types[11] = {INT8OID, INT4OID, INT4OID, INT4OID, INT4OID, INT4OID,
	INT4OID, INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		values[11];
	char		nulls[11] = "           ";

	values[0] = Int64GetDatum(run->log_id);
	values[1] = Int32GetDatum((int32) run->fetched);
	values[2] = Int32GetDatum((int32) run->created);
	values[3] = Int32GetDatum((int32) run->updated);
	values[4] = Int32GetDatum((int32) run->unchanged);
	values[5] = Int32GetDatum((int32) run->failed);
	values[6] = Int32GetDatum((int32) run->missing);
	values[7] = Int32GetDatum((int32) run->http.requests);
	values[8] = Int32GetDatum((int32) run->http.retries);
	values[9] = Int32GetDatum(run->pages_done);
	values[10] = Int32GetDatum(run->pages_total);
	if (run->pages_total <= 0)
		nulls[10] = 'n';
	crm_sync_exec("UPDATE crm.sync_log SET records_fetched = $2, records_created = $3,"
				  " records_updated = $4, records_unchanged = $5, records_failed = $6,"
				  " records_missing = $7, requests = $8, retries = $9, pages_done = $10,"
				  " pages_total = $11 WHERE id = $1",
				  11, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * Responses waiting to be stored: the array of rows of each, as jsonb
 * (crmSyncReadPage).
 */
typedef struct CrmSyncBatch
{
	Datum		docs[CRM_SYNC_BATCH_ROWS];
	int			ndocs;
	int64		nrows;
} CrmSyncBatch;

static void
crm_sync_batch_add(CrmSyncBatch *batch, Jsonb *doc, size_t nrows)
{
	Assert(batch->ndocs < CRM_SYNC_BATCH_ROWS);
	batch->docs[batch->ndocs++] = JsonbPGetDatum(doc);
	batch->nrows += nrows;
}

/*
 * Store the batch through crm._sync_pages, add its counts to the run and
 * empty it.  Returns the newest remote updated_at stored, or 0.
 */
static TimestampTz
crm_sync_store(CrmSyncRun *run, CrmSyncBatch *batch)
{
	Oid			types[4] = {TEXTOID, INT8OID, JSONBARRAYOID, INT4OID};
	Datum		values[4];
	bool		isnull;
	Datum		d;

	if (batch->nrows == 0)
	{
		batch->ndocs = 0;
		return 0;
	}
	values[0] = CStringGetTextDatum(run->server);
	values[1] = Int64GetDatum(run->log_id);
	values[2] = PointerGetDatum(construct_array(batch->docs, batch->ndocs, JSONBOID,
												-1, false, TYPALIGN_INT));
	values[3] = Int32GetDatum(crm_max_row_retries);
	crm_sync_exec("SELECT created, updated, unchanged, failed, max_updated, failed_without_id,"
				  " duplicates, changed_repeats FROM crm._sync_pages($1, $2, $3, $4)",
				  4, types, values, NULL, SPI_OK_SELECT);
	batch->ndocs = 0;
	batch->nrows = 0;
	run->created += crm_sync_int8(1);
	run->updated += crm_sync_int8(2);
	run->unchanged += crm_sync_int8(3);
	run->failed += crm_sync_int8(4);
	run->failed_without_id += crm_sync_int8(6);
	run->duplicates += crm_sync_int8(7);
	run->changed_repeats += crm_sync_int8(8);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/* GET one appointment by id and store it; 404 resolves a pending error. */
static void
crm_sync_fetch_one(CrmSyncRun *run, int64 id, bool mark_missing)
{
	char		path[64];
	CrmHttpResponse resp;
	CrmPage		page;
	CrmSyncBatch *batch;
	Jsonb	   *doc;
	size_t		nrows;

	snprintf(path, sizeof(path), "/appointments/" INT64_FORMAT, id);
	crmHttpGet(run->conn, path, true, &resp, &run->http);
	if (resp.status == 404)
	{
		Oid			types[2] = {TEXTOID, INT8OID};
		Datum		values[2];

		values[0] = CStringGetTextDatum(run->server);
		values[1] = Int64GetDatum(id);
		crm_sync_exec("UPDATE crm.sync_errors SET resolved_at = now(), updated_at = now(),"
					  " error_message = error_message || E'\\nresolved: the appointment no longer exists remotely'"
					  " WHERE server_name = $1 AND external_appointment_id = $2 AND resolved_at IS NULL",
					  2, types, values, NULL, SPI_OK_UPDATE);
		if (mark_missing)
		{
			crm_sync_exec("UPDATE crm.appointments SET sync_status = 'missing_remote', updated_at = now()"
						  " WHERE server_name = $1 AND external_id = $2 AND sync_status <> 'missing_remote'",
						  2, types, values, NULL, SPI_OK_UPDATE);
			run->missing += SPI_processed;
		}
		return;
	}
	run->fetched++;
	batch = palloc0(sizeof(CrmSyncBatch));
	nrows = crmSyncReadPage(&resp, path, &page, &doc);
	crm_sync_batch_add(batch, doc, nrows);
	(void) crm_sync_store(run, batch);
}

/*
 * Is an error of GET /appointments/{id} that appointment's own?  Not when
 * the remote cannot be reached, refuses the token, is rate-limiting us or
 * says it is unavailable (HTTP 429, 502-504: every request would fail, so
 * the sync fails and holds its cursor), nor a cancel or a shortage here.
 * Anything else (another HTTP error for that id after its retries, a
 * timeout, a body that does not parse) is, and must not stop every sync from
 * now on; unless several ids fail one after another
 * (CRM_SYNC_MAX_ID_FAILURES), as when the remote hangs on every request.
 */
static bool
crm_sync_row_error(int sqlerrcode, long http_status, bool timed_out)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_INTERNAL_ERROR:
			return false;
	}
	/* http.c's SQLSTATEs, told apart by how the GET failed */
	if (sqlerrcode == ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION)
		return timed_out;
	if (sqlerrcode == ERRCODE_FDW_ERROR &&
		(http_status == 429 || (http_status >= 502 && http_status <= 504)))
		return false;
	return sqlerrcode != ERRCODE_FDW_OUT_OF_MEMORY;
}

/* Count and note an id whose GET failed, as a row that failed to store is. */
static void
crm_sync_record_failed_id(CrmSyncRun *run, int64 id, ErrorData *edata)
{
	Oid			types[7] = {TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID, JSONBOID, INT4OID};
	Datum		values[7];
	char		nulls[7] = "     n ";

	/* in the transaction: its memory goes with it */
	crm_sync_begin("crm_fdw sync: noting a row that could not be read");
	values[0] = CStringGetTextDatum(run->server);
	values[1] = Int64GetDatum(run->log_id);
	values[2] = Int64GetDatum(id);
	values[3] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	values[4] = CStringGetTextDatum(edata->detail ?
									psprintf("%s\n%s", edata->message, edata->detail) :
									edata->message);
	values[6] = Int32GetDatum(crm_max_row_retries);
	crm_sync_exec("SELECT crm._record_sync_error($1, $2, $3, $4, $5, $6, $7)",
				  7, types, values, nulls, SPI_OK_SELECT);
	crm_sync_commit();
	run->failed++;
}

/*
 * GET by id, one transaction each, every id the query (parameters: server,
 * log id) lists.  The ids are read first, in their own transaction.
 */
static void
crm_sync_fetch_listed(CrmSyncRun *run, const char *query, bool mark_missing,
					  const char *activity)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	int64	   *ids;
	uint64		n;
	uint64		i;
	volatile int failed_in_a_row = 0;

	crm_sync_begin(activity);
	values[0] = CStringGetTextDatum(run->server);
	values[1] = Int64GetDatum(run->log_id);
	crm_sync_exec(query, 2, types, values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	crm_sync_commit();

	for (i = 0; i < n; i++)
	{
		MemoryContext cxt = CurrentMemoryContext;

		CHECK_FOR_INTERRUPTS();
		PG_TRY();
		{
			crm_sync_begin(activity);
			crm_sync_fetch_one(run, ids[i], mark_missing);
			crm_sync_log_progress(run);
			crm_sync_commit();
			failed_in_a_row = 0;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			/* several ids failing in a row: the remote's fault, not theirs */
			if (!crm_sync_row_error(edata->sqlerrcode, crmHttpFailedStatus(),
									crmHttpTimedOut()) ||
				++failed_in_a_row >= CRM_SYNC_MAX_ID_FAILURES)
			{
				FreeErrorData(edata);
				PG_RE_THROW();
			}
			FlushErrorState();
			AbortCurrentTransaction();
			crm_sync_record_failed_id(run, ids[i], edata);
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	pfree(ids);
}

/*
 * Retry, by id, the rows earlier syncs could not store and this one has not
 * met again in its walk.
 */
static void
crm_sync_retry_failed(CrmSyncRun *run)
{
	crm_sync_fetch_listed(run,
						  "SELECT external_appointment_id FROM crm.sync_errors"
						  " WHERE server_name = $1 AND resolved_at IS NULL AND NOT dead_letter"
						  " AND external_appointment_id IS NOT NULL"
						  " AND sync_log_id IS DISTINCT FROM $2 ORDER BY 1",
						  false, "crm_fdw sync: retrying failed rows");
}

/*
 * Walk every page of the listing (since the cursor, for an incremental
 * sync), a batch of pages per transaction.  Returns the cursor the walk
 * earned, and whether the listing held still while it was read (see the
 * file header).
 */
static TimestampTz
crm_sync_walk(CrmSyncRun *run, bool *settled)
{
	StringInfoData base;
	CrmSyncBatch *batch = palloc0(sizeof(CrmSyncBatch));
	TimestampTz max_seen = 0;
	TimestampTz first_date = 0;
	TimestampTz started;
	TimestampTz first_came = 0;
	TimestampTz cap;
	int64		fetched_before = run->fetched;
	int64		first_total = -1;
	int64		max_total = -1;
	bool		shrank = false;
	CrmWalkPage page;

	initStringInfo(&base);
	appendStringInfoString(&base, "/appointments");
	if (run->mode == CRM_SYNC_INCREMENTAL && run->has_cursor)
		crmAppendTimestampParam(&base, "updated_after", crmAfterBound(run->cursor));
	appendStringInfoChar(&base, strchr(base.data, '?') ? '&' : '?');
	appendStringInfo(&base, "per_page=%d", run->conn->opts.page_size);

	crm_sync_begin("crm_fdw sync: starting a walk");
	crm_sync_exec("TRUNCATE crm_seen_ids", 0, NULL, NULL, NULL, SPI_OK_UTILITY);
	crm_sync_commit();
	run->duplicates = 0;
	run->changed_repeats = 0;

	/* crmRunSync ends it after an error */
	started = GetCurrentTimestamp();
	run->walk = crmWalkBegin(run->conn, base.data, crm_sync_fetcher, &run->http);
	do
	{
		/* the page lives in the batch's transaction */
		if (batch->ndocs == 0)
			crm_sync_begin("crm_fdw sync: storing pages");
		crmWalkNext(run->walk, &page);
		if (page.pageno == 1)
		{
			first_date = page.server_date;
			first_came = GetCurrentTimestamp();
		}
		crm_sync_batch_add(batch, page.doc, page.nrows);
		run->fetched += page.nrows;
		run->pages_done++;
		if (page.has_pagination)
		{
			run->pages_total = (int) Min(page.last_page, PG_INT32_MAX);
			if (page.total < max_total)
				shrank = true;
			if (first_total < 0)
				first_total = page.total;
			max_total = Max(max_total, page.total);
		}

		if (page.last || batch->nrows >= CRM_SYNC_BATCH_ROWS ||
			batch->ndocs == CRM_SYNC_BATCH_ROWS)
		{
			TimestampTz stored_max = crm_sync_store(run, batch);

			max_seen = Max(max_seen, stored_max);
			crm_sync_log_progress(run);
			crm_sync_commit();
		}
	} while (!page.last);
	crmWalkEnd(run->walk);
	run->walk = NULL;
	pfree(batch);
	pfree(base.data);

	/*
	 * A row that an update moved from a page not yet read to one read
	 * already is in no page, and the total does not show it: only a count
	 * of the different rows the walk saw does.  Rows seen again unchanged
	 * were shifted forward, which skips none.
	 */
	*settled = !shrank && run->changed_repeats == 0 &&
		run->fetched - fetched_before - run->duplicates >= first_total;
	if (max_seen == 0)
		return 0;

	/*
	 * The remote's clock when the walk started, at the latest: the Date of
	 * page 1, less the time it took to come (the remote ran its query at some
	 * moment of that, and stamped Date after).  Without a Date, the newest
	 * row seen, less the whole walk: no row read was changed after the
	 * walk's end.
	 */
	if (first_date != 0)
		cap = first_date - (first_came - started);
	else
		cap = max_seen - (GetCurrentTimestamp() - started);
	return Min(max_seen, cap - USECS_PER_SEC);
}

/*
 * Walk until the listing holds still, at most CRM_SYNC_MAX_WALKS times.
 * Sets *advance when the cursor may move to the returned value.
 */
static TimestampTz
crm_sync_walk_settled(CrmSyncRun *run, bool *advance)
{
	TimestampTz cursor = 0;
	bool		settled = false;
	int			walk;

	for (walk = 1; walk <= CRM_SYNC_MAX_WALKS && !settled; walk++)
	{
		cursor = crm_sync_walk(run, &settled);
		if (!settled)
			elog(LOG, "crm_fdw: the listing of server \"%s\" changed while it was read (walk %d of at most %d)%s",
				 run->server, walk, CRM_SYNC_MAX_WALKS,
				 walk < CRM_SYNC_MAX_WALKS ? "; reading it again" : "; the cursor stays where it was");
	}
	*advance = settled && cursor != 0 && run->failed_without_id == 0;
	return cursor;
}

/*
 * After a full walk: every local row the listing did not show is checked by
 * id; only a 404 marks it missing_remote (a walk can miss rows that moved).
 */
static void
crm_sync_reconcile(CrmSyncRun *run)
{
	crm_sync_fetch_listed(run,
						  "SELECT a.external_id FROM crm.appointments a WHERE a.server_name = $1"
						  " AND a.sync_status <> 'missing_remote'"
						  " AND NOT EXISTS (SELECT 1 FROM crm_seen_ids s WHERE s.id = a.external_id)"
						  " ORDER BY 1",
						  true, "crm_fdw sync: checking rows the listing did not show");
}

/* Close the run: its log row, the cursor, old log rows. */
static void
crm_sync_finish(CrmSyncRun *run, bool ok, TimestampTz new_cursor, bool advance,
				const char *message, const char *detail)
{
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = "    ";

	crm_sync_begin("crm_fdw sync: finishing");
	crm_sync_log_progress(run);
	if (ok && advance && (!run->has_cursor || new_cursor > run->cursor))
	{
		Oid			ctypes[3] = {TEXTOID, TIMESTAMPTZOID, BOOLOID};
		Datum		cvalues[3];

		cvalues[0] = CStringGetTextDatum(run->server);
		cvalues[1] = TimestampTzGetDatum(new_cursor);
		cvalues[2] = BoolGetDatum(run->mode == CRM_SYNC_FULL);
		crm_sync_exec("UPDATE crm.sync_state SET sync_cursor = $2, updated_at = now(),"
					  " last_full_sync = CASE WHEN $3 THEN now() ELSE last_full_sync END"
					  " WHERE server_name = $1",
					  3, ctypes, cvalues, NULL, SPI_OK_UPDATE);
	}
	else if (ok && run->mode == CRM_SYNC_FULL)
	{
		Oid			ctypes[1] = {TEXTOID};
		Datum		cvalues[1];

		cvalues[0] = CStringGetTextDatum(run->server);
		crm_sync_exec("UPDATE crm.sync_state SET last_full_sync = now(), updated_at = now()"
					  " WHERE server_name = $1", 1, ctypes, cvalues, NULL, SPI_OK_UPDATE);
	}

	values[0] = Int64GetDatum(run->log_id);
	values[1] = CStringGetTextDatum(ok ? "completed" : "failed");
	if (message)
		values[2] = CStringGetTextDatum(message);
	else
		nulls[2] = 'n';
	if (detail)
		values[3] = CStringGetTextDatum(detail);
	else
		nulls[3] = 'n';
	crm_sync_exec("UPDATE crm.sync_log l SET status = $2, error_message = $3, error_detail = $4,"
				  " sync_completed_at = clock_timestamp(),"
				  " duration_ms = (extract(epoch FROM clock_timestamp() - l.sync_started_at) * 1000)::bigint,"
				  " cursor_after = (SELECT sync_cursor FROM crm.sync_state s WHERE s.server_name = l.server_name)"
				  " WHERE id = $1",
				  4, types, values, nulls, SPI_OK_UPDATE);

	/* crm_fdw.log_retention: old runs go */
	types[0] = INT4OID;
	values[0] = Int32GetDatum(crm_log_retention_min);
	crm_sync_exec("DELETE FROM crm.sync_log WHERE status <> 'running'"
				  " AND sync_started_at < now() - make_interval(mins => $1)",
				  1, types, values, NULL, SPI_OK_DELETE);
	crm_sync_commit();
}

/*
 * Open the run: take the server's lock (or log a skipped run), close runs a
 * dead process left open, and write the 'running' log row.  Returns false
 * when another sync of the server is running.
 */
static bool
crm_sync_start(CrmSyncRun *run, int64 request_id)
{
	Oid			types[5];
	Datum		values[5];
	char		nulls[5] = "     ";
	ForeignServer *server;
	bool		locked;
	bool		isnull;
	Datum		d;

	crm_sync_begin("crm_fdw sync: starting");
	server = GetForeignServer(run->serverid);
	if (strcmp(GetForeignDataWrapper(server->fdwid)->fdwname, "crm_fdw") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("server \"%s\" does not use the crm_fdw foreign-data wrapper",
						server->servername)));
	run->server = MemoryContextStrdup(TopMemoryContext, server->servername);

	crm_sync_lock_args(run->serverid, values, types);
	crm_sync_exec("SELECT pg_try_advisory_lock($1, $2)", 2, types, values, NULL, SPI_OK_SELECT);
	locked = crm_sync_int8(1) != 0;

	types[0] = TEXTOID;
	values[0] = CStringGetTextDatum(run->server);
	crm_sync_exec("INSERT INTO crm.sync_state (server_name) VALUES ($1) ON CONFLICT DO NOTHING",
				  1, types, values, NULL, SPI_OK_INSERT);
	if (locked)
		crm_sync_mark_stale(run->server);

	crm_sync_exec("SELECT sync_cursor FROM crm.sync_state WHERE server_name = $1",
				  1, types, values, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	run->has_cursor = !isnull;
	run->cursor = isnull ? 0 : DatumGetTimestampTz(d);

	types[1] = TEXTOID;
	values[1] = CStringGetTextDatum(run->mode == CRM_SYNC_FULL ? "full" : "incremental");
	types[2] = TEXTOID;
	values[2] = CStringGetTextDatum(locked ? "running" : "skipped");
	types[3] = TIMESTAMPTZOID;
	values[3] = TimestampTzGetDatum(run->cursor);
	if (!run->has_cursor)
		nulls[3] = 'n';
	types[4] = INT8OID;
	values[4] = Int64GetDatum(request_id);
	crm_sync_exec("INSERT INTO crm.sync_log (server_name, sync_type, status, cursor_before,"
				  " request_id, worker_pid, sync_completed_at, error_message)"
				  " VALUES ($1, $2, $3, $4, $5, pg_backend_pid(),"
				  "  CASE WHEN $3 = 'skipped' THEN clock_timestamp() END,"
				  "  CASE WHEN $3 = 'skipped' THEN 'another sync of this server is running' END)"
				  " RETURNING id",
				  5, types, values, nulls, SPI_OK_INSERT_RETURNING);
	run->log_id = crm_sync_int8(1);
	crm_sync_commit();
	return locked;
}

/*
 * Run one sync of a server.  Errors end the run as 'failed' with the
 * message (never the token); the cursor then stays where it was.
 */
void
crmRunSync(Oid serverid, CrmSyncMode mode, int64 request_id)
{
	CrmSyncRun *run = MemoryContextAllocZero(TopMemoryContext, sizeof(CrmSyncRun));
	MemoryContext oldcxt = CurrentMemoryContext;

	run->serverid = serverid;
	run->mode = mode;

	if (!crm_sync_start(run, request_id))
		return;

	PG_TRY();
	{
		TimestampTz new_cursor;
		bool		advance;

		crm_sync_begin("crm_fdw sync: reading the user mapping");
		run->conn = crmGetConnInfo(serverid, GetUserId());
		/* the connection info outlives this transaction */
		{
			MemoryContext cxt = MemoryContextSwitchTo(TopMemoryContext);
			CrmConnInfo *c = palloc(sizeof(CrmConnInfo));

			*c = *run->conn;
			c->servername = pstrdup(run->conn->servername);
			c->token = pstrdup(run->conn->token);
			c->opts.url = pstrdup(run->conn->opts.url);
			if (run->conn->opts.ca_file)
				c->opts.ca_file = pstrdup(run->conn->opts.ca_file);
			run->conn = c;
			MemoryContextSwitchTo(cxt);
		}
		crm_sync_exec("CREATE TEMP TABLE IF NOT EXISTS crm_seen_ids (id bigint PRIMARY KEY, version text)",
					  0, NULL, NULL, NULL, SPI_OK_UTILITY);
		crm_sync_commit();

		new_cursor = crm_sync_walk_settled(run, &advance);
		crm_sync_retry_failed(run);
		if (mode == CRM_SYNC_FULL)
			crm_sync_reconcile(run);
		crm_sync_finish(run, true, new_cursor, advance, NULL, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		crmWalkEnd(run->walk);
		run->walk = NULL;
		/* the server log gets the error too, with its SQLSTATE */
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("crm_fdw sync of server \"%s\" failed: %s", run->server, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		crm_sync_finish(run, false, 0, false, edata->message, edata->detail);
	}
	PG_END_TRY();
}
