/*-------------------------------------------------------------------------
 *
 * crm_fdw.h
 *		  Declarations shared by the files of crm_fdw, a foreign-data wrapper
 *		  and sync engine for a remote appointments (CRM) HTTP API.
 *
 * Each .c file owns one responsibility:
 *	fdw.c		planner and executor callbacks, the handler
 *	options.c	option validation and lookup
 *	pushdown.c	WHERE clauses to API query parameters
 *	http.c		libcurl: keep-alive handle, retries, backoff, rate limit, cancel
 *	json_datum.c	JSON (and CSV export) values to Datums, response parsing
 *	json_skim.c	a listing page read for its rows' keys alone (count(*))
 *	import.c	IMPORT FOREIGN SCHEMA
 *	sync.c		the sync engine: walks, batches, cursor, reconcile
 *	fetcher.c	reading a sync's pages, in a fetcher worker running ahead
 *	worker.c	sync workers, the scheduler, settings, crm_sync_now()
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_FDW_H
#define CRM_FDW_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "nodes/pathnodes.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

/*
 * PostgreSQL declares its SQL function json_object() in fmgrprotos.h, and
 * jansson a C function of that name: declare PostgreSQL's under another name
 * (it is never called here), then jansson's.  Include this header right after
 * postgres.h, before any header that pulls in fmgrprotos.h.
 */
#define json_object crm_pg_sql_json_object
#include "utils/fmgrprotos.h"
#undef json_object
#include <jansson.h>

#define CRM_FDW_VERSION "0.1.0"

/* ---------- options.c ---------- */

/* What a foreign table reads from the API. */
typedef enum CrmResource
{
	CRM_RESOURCE_APPOINTMENTS,	/* GET /appointments, paginated */
	CRM_RESOURCE_RECENT,		/* GET /appointments/recent?minutes=N */
	CRM_RESOURCE_STATS,			/* GET /appointments/stats, one row */
	CRM_RESOURCE_EXPORT			/* GET /appointments/export, CSV */
} CrmResource;

/* Server options, with defaults filled in. */
typedef struct CrmServerOptions
{
	char	   *url;			/* base URL, no trailing slash */
	int			timeout_ms;		/* whole request, per attempt */
	int			connect_timeout_ms;
	int			max_retries;	/* retries after the first attempt */
	int			retry_base_ms;	/* first backoff; doubles each retry */
	int			rate_limit_per_minute;	/* 0 = no client-side limit */
	int			page_size;		/* per_page, 1..100 */
	int64		max_response_bytes;
	bool		ssl_verify;
	char	   *ca_file;		/* NULL = system store */
} CrmServerOptions;

/* Everything a scan needs to talk to its server, resolved once. */
typedef struct CrmConnInfo
{
	Oid			serverid;
	char	   *servername;
	CrmServerOptions opts;
	char	   *token;			/* from the user mapping; never logged */
} CrmConnInfo;

extern void crmGetServerOptions(ForeignServer *server, CrmServerOptions *opts);
extern CrmConnInfo *crmGetConnInfo(Oid serverid, Oid userid);
extern CrmResource crmGetTableResource(Oid relid, int *minutes);
/* json_path of a column: the option, or the column name. palloc'd. */
extern char *crmGetColumnJsonPath(Oid relid, AttrNumber attnum, const char *attname);

/* ---------- http.c ---------- */

/* Counters a scan or a sync shows in EXPLAIN ANALYZE and sync_log. */
typedef struct CrmHttpStats
{
	int64		requests;		/* attempts sent, retries included */
	int64		retries;
	int64		pages;			/* successful responses */
	int64		pages_skimmed;	/* of them, read for rows' keys alone (json_skim.c) */
	int64		bytes;			/* body bytes received */
	int64		rate_limited;	/* 429 responses received */
} CrmHttpStats;

/* A successful response; body is palloc'd and NUL-terminated. */
typedef struct CrmHttpResponse
{
	long		status;
	char	   *body;
	size_t		body_len;
	TimestampTz server_date;	/* the Date header (API clock), 0 if absent */
} CrmHttpResponse;

/*
 * GET <url><path_and_query>.  Retries network errors, 5xx and 429 with backoff
 * (429 honours Retry-After); raises ERROR for everything else that is not
 * 2xx, except 404 when allow_404 (then status 404 is returned).
 * path_and_query starts with "/" and is already URL-encoded.
 */
extern void crmHttpGet(CrmConnInfo *conn, const char *path_and_query,
					   bool allow_404, CrmHttpResponse *resp,
					   CrmHttpStats *stats);
/*
 * How the last crmHttpGet failed: its HTTP status, or 0; whether it timed
 * out.  429 and 5xx share SQLSTATE HV000, a timeout and a refused connection
 * HV00N; the sync tells the remote's state from one row's by these.
 */
extern long crmHttpFailedStatus(void);
extern bool crmHttpTimedOut(void);
/*
 * Send GET <url><path_and_query> ahead, for the next crmHttpGet of the same
 * URL and connection; crmHttpCancelPrefetch drops it.
 */
extern void crmHttpPrefetch(CrmConnInfo *conn, const char *path_and_query);
extern void crmHttpCancelPrefetch(void);
/*
 * Hand the rate-limit window of conn's server between processes: the sends
 * recorded after the first *seen (at most max, oldest first) and the hold;
 * the importer appends them to its own window.
 */
extern int	crmHttpRateCapacity(const CrmConnInfo *conn);
extern int	crmHttpRateExport(CrmConnInfo *conn, int64 *seen, int64 *sent_ms,
							  int max, int64 *hold_until_ms);
extern void crmHttpRateImport(CrmConnInfo *conn, const int64 *sent_ms, int n,
							  int64 hold_until_ms);
/* Percent-encode a query-string value into buf. */
extern void crmAppendUrlEncoded(StringInfo buf, const char *value);

/* ---------- json_datum.c ---------- */

/* How one foreign-table column is filled. */
typedef struct CrmColumn
{
	AttrNumber	attnum;
	char	   *attname;
	char	   *json_path;		/* "payment.status" */
	List	   *path_parts;		/* of String, json_path split on '.' */
	Oid			typid;
	Oid			basetype;		/* typid, or the base type of a domain */
	int32		typmod;
	Oid			typinput;
	Oid			typioparam;
	FmgrInfo	inflinfo;
	void	   *domain_extra;	/* domain_check's cache (values not read by
								 * domain_in) */
	char	   *relname;		/* for error context */
} CrmColumn;

extern void crmInitColumn(CrmColumn *col, Relation rel, AttrNumber attnum);
/* Parse a JSON text; the document is freed when CurrentMemoryContext is reset. */
extern void crmJsonUseMemoryContexts(void);
extern void crmJsonSkipBom(const char **text, size_t *len);
extern json_t *crmJsonParse(const char *text, size_t len, const char *what);
/* Follow col->path_parts from obj; NULL when absent. */
extern json_t *crmJsonLookup(json_t *obj, CrmColumn *col);
/* Convert one JSON value to a Datum of the column's type. */
extern Datum crmJsonToDatum(json_t *value, CrmColumn *col, int64 row_id,
							bool *isnull);
/* Fill values[i]/nulls[i] for each cols[i] from one JSON object. */
extern void crmJsonObjectToRow(json_t *obj, CrmColumn *cols, int ncols,
							   Datum *values, bool *nulls);

/* What a paged scan keeps of a row to skip it when it comes back unchanged. */
typedef struct CrmRowKey
{
	bool		has_id;			/* "id" is a JSON integer */
	int64		id;
	uint32		version;		/* hash of "updated_at" when a string, else 0 */
} CrmRowKey;

extern void crmJsonRowKey(json_t *obj, CrmRowKey *key);

/* One parsed response of a JSON resource. */
typedef struct CrmPage
{
	json_t	   *rows;			/* array of objects (borrowed from the document) */
	CrmRowKey  *keys;			/* instead of rows, from crmSkimPage */
	size_t		nrows;
	bool		has_pagination;
	int64		total;
	int64		current_page;
	int64		last_page;
} CrmPage;

/*
 * Check the envelope of a response of resource (path names it in errors) and
 * find its rows: "data" array for lists, the "data" object of GET
 * /appointments/{id} as a one-element array, the whole object for stats.
 */
extern void crmParsePage(json_t *root, CrmResource resource, const char *path,
						 CrmPage *page);

/* ---------- json_skim.c ---------- */

extern bool crmSkimPage(const char *text, size_t len, CrmPage *page);

/* CSV (the export resource): parse a whole body into rows of fields. */
typedef struct CrmCsv
{
	int			nfields;		/* of the header */
	char	  **header;
	List	   *rows;			/* each a char ** of nfields (NULL = empty) */
} CrmCsv;

extern CrmCsv *crmCsvParse(const char *body, size_t len);
extern Datum crmTextToDatum(const char *text, CrmColumn *col, int64 row_id,
							bool *isnull);
extern int64 crmRowIdFromText(const char *text);

/* ---------- pushdown.c ---------- */

/* The API filter a column stands for, found from its json_path and type. */
typedef enum CrmField
{
	CRM_FIELD_NONE,
	CRM_FIELD_DATE,				/* appointment_date: start_date/end_date */
	CRM_FIELD_STATUS,
	CRM_FIELD_LOCATION,
	CRM_FIELD_ENQUIRY_TYPE,
	CRM_FIELD_CREATED,			/* created_at: created_after */
	CRM_FIELD_UPDATED,			/* updated_at: updated_after */
	CRM_FIELD_ID,				/* GET /appointments/{id} */
	CRM_FIELD_PERIOD_START,		/* stats period.start_date: start_date */
	CRM_FIELD_PERIOD_END		/* stats period.end_date: end_date */
} CrmField;

typedef enum CrmOp
{
	CRM_OP_EQ,
	CRM_OP_LT,
	CRM_OP_LE,
	CRM_OP_GT,
	CRM_OP_GE,
	CRM_OP_IN					/* = ANY (array) */
} CrmOp;

/* A WHERE clause the API can apply: column field, operator, value. */
typedef struct CrmPushCond
{
	CrmField	field;
	CrmOp		op;
	Expr	   *value;			/* evaluated at execution */
} CrmPushCond;

/* A pushed value at execution, or only its text for EXPLAIN. */
typedef struct CrmPushValue
{
	bool		known;
	bool		isnull;
	Datum		value;
	char	   *display;		/* when !known */
} CrmPushValue;

/* One remote request stream of a scan. */
typedef struct CrmRequest
{
	char	   *path;			/* path and query, URL-encoded */
	bool		paged;			/* append &page=N and follow pages */
	bool		allow_404;		/* GET /appointments/{id}: 404 is "no row" */
} CrmRequest;

extern CrmField crmColumnField(CrmResource resource, const char *json_path,
							   Oid typid);
extern bool crmPushableCondition(PlannerInfo *root, RelOptInfo *baserel,
								 const CrmField *fields, int nfields,
								 Expr *clause, CrmPushCond *cond);
extern List *crmBuildRequests(CrmResource resource, int minutes, int per_page,
							  List *specs, CrmPushValue *values);
/* created_after/updated_after for "> ts": a second earlier (see pushdown.c). */
extern TimestampTz crmAfterBound(TimestampTz ts);
extern void crmAppendTimestampParam(StringInfo buf, const char *name, TimestampTz ts);
/* A plan's spec list entry, and back. */
extern Node *crmSpecToNode(CrmField field, CrmOp op);
extern void crmSpecFromNode(Node *node, CrmField *field, CrmOp *op);

/* ---------- import.c ---------- */

extern List *crmImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid);

/* ---------- sync.c ---------- */

typedef enum CrmSyncMode
{
	CRM_SYNC_INCREMENTAL,
	CRM_SYNC_FULL
} CrmSyncMode;

/* Settings (worker.c defines them as GUCs). */
extern int	crm_sync_interval_s;
extern char *crm_sync_database;
extern char *crm_sync_role;
extern int	crm_log_retention_min;
extern int	crm_max_row_retries;

extern bool crm_sync_fetcher;

/* ---------- fetcher.c ---------- */

/* One page of a walk over the listing, checked, its rows as jsonb. */
typedef struct CrmWalkPage
{
	int			pageno;
	Jsonb	   *doc;			/* the array of its rows */
	size_t		nrows;
	bool		has_pagination;
	int64		total;
	int64		last_page;
	TimestampTz server_date;	/* the API's clock, 0 if not sent */
	bool		last;			/* no page follows */
} CrmWalkPage;

typedef struct CrmWalkReader CrmWalkReader;

/*
 * Read the pages of <base>&page=N (base already has a query string), in a
 * fetcher background worker that runs ahead of the caller when use_fetcher
 * and a worker slot is free, else in this process.  HTTP counters go to
 * *stats.  crmWalkNext gives the next page; call it until one is last.
 * crmWalkEnd stops the fetcher and frees the walk; call it after an error
 * too.
 */
extern CrmWalkReader *crmWalkBegin(CrmConnInfo *conn, const char *base,
								   bool use_fetcher, CrmHttpStats *stats);
extern void crmWalkNext(CrmWalkReader *walk, CrmWalkPage *page);
extern void crmWalkEnd(CrmWalkReader *walk);
/* Check a response (GET path) for storing; its row count, its rows as a jsonb array. */
extern size_t crmSyncReadPage(CrmHttpResponse *resp, const char *path, CrmPage *page,
							  Jsonb **doc);
/* Background worker entry point of a fetcher. */
extern PGDLLEXPORT void crm_fetcher_main(Datum arg);

/* Run one sync of a server in this (background worker) process. */
extern void crmRunSync(Oid serverid, CrmSyncMode mode, int64 request_id);
/* Mark runs left 'running' by a process that died as failed. */
extern void crmMarkInterruptedRuns(void);

#endif							/* CRM_FDW_H */
