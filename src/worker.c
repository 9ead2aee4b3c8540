/*-------------------------------------------------------------------------
 *
 * worker.c
 *		  Background workers: the per-sync worker, the scheduler, and the SQL
 *		  functions crm_sync_now() and crm_sync_full() that start a sync and
 *		  wait for it.
 *
 * A sync always runs in a dynamic background worker connected as the role
 * that asked for it (the caller of crm_sync_now, or crm_fdw.role for the
 * scheduler), so it reads that role's user mapping and has exactly its
 * rights.  With shared_preload_libraries = 'crm_fdw', a scheduler worker
 * starts one every crm_fdw.sync_interval for each enabled server.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(crm_sync_now);
PG_FUNCTION_INFO_V1(crm_sync_full);

PGDLLEXPORT void crm_sync_worker_main(Datum main_arg);
PGDLLEXPORT void crm_scheduler_main(Datum main_arg);
void		_PG_init(void);

int			crm_sync_interval_s = 600;
char	   *crm_sync_database = NULL;
char	   *crm_sync_role = NULL;
int			crm_log_retention_min = 30 * 24 * 60;
int			crm_max_row_retries = 5;
bool		crm_sync_fetcher = true;

/* What a sync worker is asked to do, in bgw_extra. */
typedef struct CrmSyncRequest
{
	Oid			dboid;
	Oid			roleoid;
	Oid			serverid;
	CrmSyncMode mode;
	int64		request_id;
	int			max_row_retries;	/* the caller's settings, SET included */
	bool		use_fetcher;
} CrmSyncRequest;

void
_PG_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("crm_fdw.sync_interval",
							"Time between scheduled syncs of every enabled server (0 turns the scheduler off).",
							"Needs shared_preload_libraries = 'crm_fdw'.",
							&crm_sync_interval_s, 600, 0, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_fdw.database",
							   "Database in which the scheduler runs syncs.",
							   NULL, &crm_sync_database, "postgres",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_fdw.role",
							   "Role as which the scheduler runs syncs (its user mappings are used).",
							   NULL, &crm_sync_role, "postgres",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_fdw.log_retention",
							"How long crm.sync_log keeps finished runs.",
							NULL, &crm_log_retention_min, 30 * 24 * 60, 1, INT_MAX / 60,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_fdw.max_row_retries",
							"How many syncs retry a row that cannot be stored before it is dead-lettered.",
							NULL, &crm_max_row_retries, 5, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("crm_fdw.sync_fetcher",
							 "Whether a sync reads its pages in a second background worker, ahead of storing them.",
							 "Without a free worker slot the sync reads them itself.",
							 &crm_sync_fetcher, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("crm_fdw");

	crmJsonUseMemoryContexts();

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "crm_scheduler_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "crm_fdw scheduler");
	snprintf(worker.bgw_type, BGW_MAXLEN, "crm_fdw scheduler");
	RegisterBackgroundWorker(&worker);
}

/* ---------- the sync worker ---------- */

void
crm_sync_worker_main(Datum main_arg)
{
	CrmSyncRequest req;

	memcpy(&req, MyBgworkerEntry->bgw_extra, sizeof(req));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(req.dboid, req.roleoid, 0);
	crm_max_row_retries = req.max_row_retries;
	crm_sync_fetcher = req.use_fetcher;

	crmRunSync(req.serverid, req.mode, req.request_id);
	proc_exit(0);
}

/* The waiting caller is going away: its sync goes too. */
static void
crm_stop_sync_worker(int code, Datum arg)
{
	TerminateBackgroundWorker((BackgroundWorkerHandle *) DatumGetPointer(arg));
}

/*
 * Start a sync worker and wait until it exits.  If the wait is interrupted
 * (the caller cancelled or was terminated), the worker is stopped too: each
 * page it stored is committed, the rest is left for the next sync.
 */
static void
crm_run_sync_worker(Oid serverid, CrmSyncMode mode, int64 request_id)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	CrmSyncRequest req;
	pid_t		pid;

	req.dboid = MyDatabaseId;
	req.roleoid = GetUserId();
	req.serverid = serverid;
	req.mode = mode;
	req.request_id = request_id;
	req.max_row_retries = crm_max_row_retries;
	req.use_fetcher = crm_sync_fetcher;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "crm_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "crm_sync_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "crm_fdw sync");
	snprintf(worker.bgw_type, BGW_MAXLEN, "crm_fdw sync");
	memcpy(worker.bgw_extra, &req, sizeof(req));

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a crm_fdw sync worker"),
				 errhint("Raise max_worker_processes, or wait for other background workers to finish.")));
	/* also on FATAL (pg_terminate_backend), which PG_CATCH never sees */
	PG_ENSURE_ERROR_CLEANUP(crm_stop_sync_worker, PointerGetDatum(handle));
	{
		if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_POSTMASTER_DIED)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("postmaster exited while starting a crm_fdw sync worker")));
		(void) WaitForBackgroundWorkerShutdown(handle);
	}
	PG_END_ENSURE_ERROR_CLEANUP(crm_stop_sync_worker, PointerGetDatum(handle));
}

/* A request id no other run shares: the sync_log rows it wrote are ours. */
static int64
crm_new_request_id(void)
{
	return (int64) ((uint64) GetCurrentTimestamp() << 16 ^ (uint64) MyProcPid);
}

/*
 * Servers to sync: the named one, or every crm_fdw server not disabled in
 * crm.sync_state.  The list is made in the caller's memory context: SPI's
 * goes with SPI_finish.
 */
static List *
crm_servers_to_sync(Name server)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext spicxt;
	List	   *result = NIL;
	uint64		i;

	if (server != NULL)
	{
		ForeignServer *fs = GetForeignServerByName(NameStr(*server), false);

		return list_make1_oid(fs->serverid);
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT s.oid FROM pg_foreign_server s"
					" JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw"
					" LEFT JOIN crm.sync_state st ON st.server_name = s.srvname"
					" WHERE w.fdwname = 'crm_fdw' AND coalesce(st.enabled, true)"
					" ORDER BY s.srvname", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list crm_fdw servers");
	spicxt = MemoryContextSwitchTo(callercxt);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		result = lappend_oid(result,
							 DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc, 1, &isnull)));
	}
	MemoryContextSwitchTo(spicxt);
	SPI_finish();
	return result;
}

/* The crm.sync_log rows of request_id, into the function's tuplestore. */
static void
crm_return_log_rows(FunctionCallInfo fcinfo, int64 request_id, Oid serverid)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	Datum	   *cols;
	bool	   *nulls;
	uint64		i;

	values[0] = Int64GetDatum(request_id);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* A fresh snapshot: the worker committed after this statement began. */
	if (SPI_execute_with_args("SELECT * FROM crm.sync_log WHERE request_id = $1 ORDER BY id",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read crm.sync_log");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the sync worker for server \"%s\" exited before it started",
						GetForeignServer(serverid)->servername),
				 errhint("The server log says why; the role must be allowed to log in and to use schema crm.")));
	cols = palloc(sizeof(Datum) * SPI_tuptable->tupdesc->natts);
	nulls = palloc(sizeof(bool) * SPI_tuptable->tupdesc->natts);
	for (i = 0; i < SPI_processed; i++)
	{
		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, cols, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, cols, nulls);
	}
	SPI_finish();
}

/* crm_sync_now / crm_sync_full: run the syncs and return their log rows. */
static Datum
crm_sync_sql(FunctionCallInfo fcinfo, CrmSyncMode mode)
{
	Name		server = PG_ARGISNULL(0) ? NULL : PG_GETARG_NAME(0);
	List	   *servers;
	ListCell   *lc;

	/* a worker would wait for the end of recovery, and write then */
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot run a crm_fdw sync during recovery"),
				 errhint("Run crm_sync_now() or crm_sync_full() on the primary.")));
	InitMaterializedSRF(fcinfo, 0);
	servers = crm_servers_to_sync(server);
	foreach(lc, servers)
	{
		Oid			serverid = lfirst_oid(lc);
		int64		request_id = crm_new_request_id();

		if (pg_foreign_server_aclcheck(serverid, GetUserId(), ACL_USAGE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for foreign server %s",
							GetForeignServer(serverid)->servername)));
		crm_run_sync_worker(serverid, mode, request_id);
		crm_return_log_rows(fcinfo, request_id, serverid);
	}
	return (Datum) 0;
}

Datum
crm_sync_now(PG_FUNCTION_ARGS)
{
	return crm_sync_sql(fcinfo, CRM_SYNC_INCREMENTAL);
}

Datum
crm_sync_full(PG_FUNCTION_ARGS)
{
	return crm_sync_sql(fcinfo, CRM_SYNC_FULL);
}

/* ---------- the scheduler ---------- */

/* Does this database have crm_fdw installed? */
static bool
crm_scheduler_extension_present(void)
{
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_execute("SELECT 1 FROM pg_extension WHERE extname = 'crm_fdw'", true, 1);
	present = SPI_processed > 0;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return present;
}

/* One round: a sync of every enabled server; a failure is logged, not fatal. */
static void
crm_scheduler_round(void)
{
	static MemoryContext roundcxt = NULL;
	MemoryContext oldcxt;
	List	   *servers;
	ListCell   *lc;

	/* the server list outlives the transaction that reads it */
	if (roundcxt == NULL)
		roundcxt = AllocSetContextCreate(TopMemoryContext, "crm_fdw scheduler round",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(roundcxt);

	if (!crm_scheduler_extension_present())
	{
		elog(LOG, "crm_fdw scheduler: extension crm_fdw is not installed in database \"%s\"",
			 crm_sync_database);
		return;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "crm_fdw scheduler: listing servers");
	oldcxt = MemoryContextSwitchTo(roundcxt);
	servers = crm_servers_to_sync(NULL);
	MemoryContextSwitchTo(oldcxt);
	PopActiveSnapshot();
	CommitTransactionCommand();

	foreach(lc, servers)
	{
		Oid			serverid = lfirst_oid(lc);

		CHECK_FOR_INTERRUPTS();
		StartTransactionCommand();
		PG_TRY();
		{
			pgstat_report_activity(STATE_RUNNING, "crm_fdw scheduler: waiting for a sync");
			crm_run_sync_worker(serverid, CRM_SYNC_INCREMENTAL, crm_new_request_id());
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
crm_scheduler_main(Datum main_arg)
{
	TimestampTz next_run;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(crm_sync_database, crm_sync_role, 0);
	elog(LOG, "crm_fdw scheduler started in database \"%s\" as role \"%s\", interval %d s",
		 crm_sync_database, crm_sync_role, crm_sync_interval_s);

	if (crm_scheduler_extension_present())
		crmMarkInterruptedRuns();
	next_run = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   (int64) crm_sync_interval_s * 1000);

	for (;;)
	{
		long		wait_ms = -1;
		int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;

		if (crm_sync_interval_s > 0)
		{
			wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_run);
			events |= WL_TIMEOUT;
		}
		(void) WaitLatch(MyLatch, events, wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			int			old_interval = crm_sync_interval_s;
			char	   *old_database = pstrdup(crm_sync_database);
			char	   *old_role = pstrdup(crm_sync_role);

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* A worker stays in its database: exit 1 to be restarted in the new one. */
			if (strcmp(old_database, crm_sync_database) != 0 ||
				strcmp(old_role, crm_sync_role) != 0)
			{
				elog(LOG, "crm_fdw scheduler: database or role changed, restarting");
				proc_exit(1);
			}
			if (crm_sync_interval_s != old_interval)
				next_run = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   (int64) crm_sync_interval_s * 1000);
		}
		if (crm_sync_interval_s > 0 && GetCurrentTimestamp() >= next_run)
		{
			crm_scheduler_round();
			next_run = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   (int64) crm_sync_interval_s * 1000);
		}
	}
}
