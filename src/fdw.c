/*-------------------------------------------------------------------------
 *
 * fdw.c
 *		  The foreign-data wrapper handler: planner and executor callbacks.
 *
 * Plan time decides which clauses become API parameters (pushdown.c) and
 * stores them in the plan as a spec list plus value expressions, so EXPLAIN
 * can print the remote requests without touching the network and generic
 * plans evaluate their parameters at execution.  Every clause also stays in
 * the plan's local quals.  Execution walks the requests one page at a time in
 * a memory context that is reset before each fetch, so a scan of any size
 * runs in the memory of one page.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include <math.h>

#include "access/parallel.h"
#include "access/table.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/sampling.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"


PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(crm_fdw_handler);

/* Slots of ForeignScan.fdw_private; fdw_exprs holds the specs' values. */
enum FdwScanPrivateIndex
{
	FdwScanPrivateResource,		/* Integer: CrmResource */
	FdwScanPrivateMinutes,		/* Integer: minutes of "recent" */
	FdwScanPrivatePerPage,		/* Integer: per_page of list requests */
	FdwScanPrivateSpecs,		/* List of spec Nodes, parallel to fdw_exprs */
	FdwScanPrivateRetrievedAttrs,	/* List of Integer attnums to convert */
	FdwScanPrivateReadAhead,	/* Boolean: send the next page's request early */
	FdwScanPrivateRows			/* Integer: rows the planner expects in all */
};

/* Planner state of one foreign relation (baserel->fdw_private). */
typedef struct CrmRelInfo
{
	CrmResource resource;
	int			minutes;
	int			page_size;
	int			nfields;
	CrmField   *fields;			/* by attnum - 1 */
	bool		all_pushed;		/* every restriction clause is pushable */
	int			nids;			/* id = / IN with constant values: how many */
	bool		counted;		/* ANALYZE has counted the rows */
} CrmRelInfo;

/*
 * The appointments a paged scan has returned: id and a hash of its
 * updated_at.  The API's order is not stable while rows change, so a page
 * can repeat a row (skipped here) or, when a row moved behind the scan,
 * hide another (then the scan fails; see crm_check_seen).
 */
static inline uint32
crm_id_hash(int64 id)
{
	return hash_combine(murmurhash32((uint32) id), murmurhash32((uint32) ((uint64) id >> 32)));
}

typedef struct CrmSeenEntry
{
	int64		id;
	uint32		version;
	char		status;
} CrmSeenEntry;

#define SH_PREFIX crm_seen
#define SH_ELEMENT_TYPE CrmSeenEntry
#define SH_KEY_TYPE int64
#define SH_KEY id
#define SH_HASH_KEY(tb, key) crm_id_hash(key)
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * The rows a parallel scan has returned, shared: CRM_SEEN_PARTITIONS open
 * addressing tables of 16-byte slots in the query's DSA, each under its own
 * lock, sized for the planner's rows and doubled when three quarters full
 * (dshash took about 96 bytes a row).
 */
#define CRM_SEEN_PARTITIONS			64
#define CRM_SEEN_MIN_SLOTS			64

typedef struct CrmSeenSlot
{
	int64		id;
	uint32		version;
	bool		used;
} CrmSeenSlot;

typedef struct CrmSeenPartition
{
	LWLock		lock;
	dsa_pointer slots;			/* CrmSeenSlot[nslots], or InvalidDsaPointer */
	uint32		nslots;			/* 0 or a power of 2 */
	uint32		nused;
} CrmSeenPartition;

/* The slots a partition starts with for rows expected in all: no growth. */
static uint32
crm_seen_first_slots(double rows)
{
	uint32		nslots = CRM_SEEN_MIN_SLOTS;

	while (nslots < (1U << 24) && nslots * 3.0 / 4 < rows / CRM_SEEN_PARTITIONS)
		nslots *= 2;
	return nslots;
}

/*
 * What the participants of a parallel scan share: the pages of its one
 * listing are claimed one at a time.
 */
typedef struct CrmParallelScan
{
	slock_t		mutex;
	int			next_page;		/* pages claimed so far */
	int			last_page;		/* INT_MAX until a page tells */
	int64		total;			/* pagination.total, -1 until a page tells */
	int			pages_done;		/* claimed pages whose rows were all returned */
	int64		rows_returned;	/* by all participants, duplicates skipped */
	CrmHttpStats stats;			/* the workers', for the leader's EXPLAIN */
	uint32		first_slots;	/* of a partition, from the planner's rows */
	CrmSeenPartition seen[CRM_SEEN_PARTITIONS];
} CrmParallelScan;

/* Executor state of one scan. */
typedef struct CrmScanState
{
	CrmConnInfo *conn;			/* NULL under EXPLAIN without ANALYZE */
	CrmResource resource;
	int			minutes;
	int			per_page;
	bool		read_ahead;
	List	   *specs;
	List	   *value_states;	/* ExprStates of fdw_exprs */

	int			ncols;
	CrmColumn  *cols;			/* retrieved columns */
	Datum	   *col_values;
	bool	   *col_nulls;

	MemoryContext batch_cxt;	/* one response and its rows; reset per fetch */
	List	   *requests;		/* of CrmRequest, allocated per (re)scan */
	bool		requests_built;
	ListCell   *cur_request;
	int			page;			/* last page fetched of cur_request */
	bool		more_pages;

	/* rows of the current response: objects, or their keys alone (skimmed) */
	json_t	   *rows;
	CrmRowKey  *keys;
	size_t		nrows;
	size_t		row_index;
	CrmCsv	   *csv;
	ListCell   *csv_row;
	int		   *csv_field;		/* per retrieved column: header index, or -1 */
	int			csv_id_field;	/* header index of "id", for messages */

	crm_seen_hash *seen;		/* paged scans: rows returned so far */
	MemoryContext seen_cxt;
	int64		max_total;		/* largest pagination.total of this stream */
	int64		first_total;	/* pagination.total of its first page, or -1 */
	int64		last_page_seen; /* pagination.last_page of its latest page */
	char	   *cur_path;		/* the request of the current page, for messages */

	CrmParallelScan *pscan;		/* NULL unless a parallel scan */
	dsa_area   *area;			/* the query's, holding pscan's rows seen */
	bool		shared_pages;	/* this (re)scan claims pages from pscan */
	int			ahead_page;		/* claimed and sent ahead, or 0 */
	bool		page_claimed;	/* the current page is one of pscan's */
	int64		rows_returned;	/* of the claimed page (parallel) or of the
								 * stream (serial), duplicates skipped */
	bool		sampling;		/* ANALYZE: a changing listing is no error */

	CrmHttpStats stats;
	List	   *shown_requests; /* paths of the first execution, for EXPLAIN ANALYZE */
} CrmScanState;

/* Rows assumed when nothing better is known: a realistic booking table. */
#define CRM_DEFAULT_ROWS			1000.0
#define CRM_RECENT_ROWS				50.0
/* A remote round trip, in planner cost units: far dearer than a page read. */
#define CRM_REQUEST_COST			100.0
#define CRM_ROW_COST				(cpu_tuple_cost * 4)
/* A parallel scan needs this many pages for its first worker. */
#define CRM_PARALLEL_MIN_PAGES		4
/* EXPLAIN lists at most this many requests of a scan. */
#define CRM_EXPLAIN_MAX_REQUESTS	10

static void crmGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid);
static void crmGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid);
static ForeignScan *crmGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
									  Oid foreigntableid, ForeignPath *best_path,
									  List *tlist, List *scan_clauses, Plan *outer_plan);
static void crmBeginForeignScan(ForeignScanState *node, int eflags);
static TupleTableSlot *crmIterateForeignScan(ForeignScanState *node);
static void crmReScanForeignScan(ForeignScanState *node);
static void crmEndForeignScan(ForeignScanState *node);
static void crmExplainForeignScan(ForeignScanState *node, ExplainState *es);
static bool crmIsForeignScanParallelSafe(PlannerInfo *root, RelOptInfo *rel, RangeTblEntry *rte);
static Size crmEstimateDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt);
static void crmInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt, void *coordinate);
static void crmReInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt, void *coordinate);
static void crmInitializeWorkerForeignScan(ForeignScanState *node, shm_toc *toc, void *coordinate);
static void crmShutdownForeignScan(ForeignScanState *node);
static bool crmAnalyzeForeignTable(Relation relation, AcquireSampleRowsFunc *func,
								   BlockNumber *totalpages);

Datum
crm_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = crmGetForeignRelSize;
	routine->GetForeignPaths = crmGetForeignPaths;
	routine->GetForeignPlan = crmGetForeignPlan;
	routine->BeginForeignScan = crmBeginForeignScan;
	routine->IterateForeignScan = crmIterateForeignScan;
	routine->ReScanForeignScan = crmReScanForeignScan;
	routine->EndForeignScan = crmEndForeignScan;
	routine->ExplainForeignScan = crmExplainForeignScan;
	routine->ImportForeignSchema = crmImportForeignSchema;
	routine->IsForeignScanParallelSafe = crmIsForeignScanParallelSafe;
	routine->EstimateDSMForeignScan = crmEstimateDSMForeignScan;
	routine->InitializeDSMForeignScan = crmInitializeDSMForeignScan;
	routine->ReInitializeDSMForeignScan = crmReInitializeDSMForeignScan;
	routine->InitializeWorkerForeignScan = crmInitializeWorkerForeignScan;
	routine->ShutdownForeignScan = crmShutdownForeignScan;
	routine->AnalyzeForeignTable = crmAnalyzeForeignTable;

	PG_RETURN_POINTER(routine);
}

/* ---------- planning ---------- */

/* Number of constant ids a pushable id clause names, or 1 when not constant. */
static int
crm_count_ids(CrmPushCond *cond)
{
	Const	   *c;

	if (!IsA(cond->value, Const))
		return 1;
	c = (Const *) cond->value;
	if (c->constisnull)
		return 0;
	if (cond->op == CRM_OP_EQ)
		return 1;
	return ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(c->constvalue)),
						  ARR_DIMS(DatumGetArrayTypeP(c->constvalue)));
}

/*
 * Classify the restriction clauses and estimate the size of the relation.
 * No request is made: estimates come from defaults and clause selectivity,
 * never 0, so the planner does not mistake an API scan for a cheap inner.
 */
static void
crmGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	CrmRelInfo *info = palloc0(sizeof(CrmRelInfo));
	ForeignTable *table = GetForeignTable(foreigntableid);
	CrmServerOptions sopts;
	Relation	rel;
	TupleDesc	tupdesc;
	ListCell   *lc;
	double		rows;
	int			i;

	baserel->fdw_private = info;
	info->resource = crmGetTableResource(foreigntableid, &info->minutes);
	crmGetServerOptions(GetForeignServer(table->serverid), &sopts);
	info->page_size = sopts.page_size;

	rel = table_open(foreigntableid, NoLock);
	tupdesc = RelationGetDescr(rel);
	info->nfields = tupdesc->natts;
	info->fields = palloc0(sizeof(CrmField) * Max(tupdesc->natts, 1));
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		char	   *path;

		if (att->attisdropped)
			continue;
		path = crmGetColumnJsonPath(foreigntableid, att->attnum, NameStr(att->attname));
		info->fields[i] = crmColumnField(info->resource, path, att->atttypid);
	}
	table_close(rel, NoLock);

	info->all_pushed = true;
	info->nids = -1;
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		CrmPushCond cond;

		if (!crmPushableCondition(root, baserel, info->fields, info->nfields,
								  ri->clause, &cond))
		{
			info->all_pushed = false;
			continue;
		}
		if (cond.field == CRM_FIELD_ID)
		{
			int			n = crm_count_ids(&cond);

			info->nids = info->nids < 0 ? n : Min(info->nids, n);
		}
	}

	switch (info->resource)
	{
		case CRM_RESOURCE_STATS:
			rows = 1;
			break;
		case CRM_RESOURCE_RECENT:
			rows = CRM_RECENT_ROWS;
			break;
		default:
			info->counted = baserel->tuples > 0;
			rows = info->counted ? baserel->tuples : CRM_DEFAULT_ROWS;
			break;
	}
	if (info->nids >= 0)
		rows = info->nids;
	else
		rows *= clauselist_selectivity(root, baserel->baserestrictinfo, 0,
									   JOIN_INNER, NULL);
	baserel->rows = clamp_row_est(rows);
}

/* Total cost of fetching rows through requests. */
static void
crm_estimate_cost(CrmRelInfo *info, double rows, bool by_id,
				  Cost *startup, Cost *total)
{
	double		requests;

	if (by_id)
		requests = Max(rows, 1);
	else if (info->resource == CRM_RESOURCE_APPOINTMENTS)
		requests = Max(ceil(rows / info->page_size), 1);
	else
		requests = 1;
	*startup = CRM_REQUEST_COST;
	*total = requests * CRM_REQUEST_COST + rows * CRM_ROW_COST;
}

/* generate_implied_equalities_for_column callback: is em our id column? */
static bool
crm_ec_member_is_id(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
					EquivalenceMember *em, void *arg)
{
	CrmRelInfo *info = (CrmRelInfo *) arg;
	Expr	   *expr = em->em_expr;
	Var		   *var;

	/* a column of a domain over bigint is there as a RelabelType */
	while (IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	var = (Var *) expr;
	return IsA(var, Var) && var->varno == rel->relid && var->varlevelsup == 0 &&
		var->varattno > 0 && var->varattno <= info->nfields &&
		info->fields[var->varattno - 1] == CRM_FIELD_ID;
}

/*
 * Add a path parameterized by the outer relation of an "id = outer.col"
 * clause: a nested loop then fetches one appointment by id per outer row.
 */
static void
crm_add_id_param_path(PlannerInfo *root, RelOptInfo *baserel, CrmRelInfo *info,
					  RestrictInfo *ri, List **seen)
{
	CrmPushCond cond;
	Relids		required_outer;
	ParamPathInfo *ppi;
	Cost		startup;
	Cost		total;
	ListCell   *lc;

	if (!crmPushableCondition(root, baserel, info->fields, info->nfields,
							  ri->clause, &cond) ||
		cond.field != CRM_FIELD_ID || cond.op != CRM_OP_EQ)
		return;
	required_outer = bms_difference(ri->clause_relids, bms_make_singleton(baserel->relid));
	if (bms_is_empty(required_outer))
		return;
	foreach(lc, *seen)
		if (bms_equal((Relids) lfirst(lc), required_outer))
			return;
	*seen = lappend(*seen, required_outer);

	ppi = get_baserel_parampathinfo(root, baserel, required_outer);
	crm_estimate_cost(info, 1, true, &startup, &total);
	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, 1, startup, total,
									 NIL, ppi->ppi_req_outer, NULL, NIL));
}

/*
 * A path whose pages are shared among the participants of a parallel plan.
 * Workers as for a heap scan: the first at CRM_PARALLEL_MIN_PAGES pages, one
 * more each time the pages triple.
 */
static void
crm_add_partial_path(PlannerInfo *root, RelOptInfo *baserel, CrmRelInfo *info,
					 Cost startup, Cost total)
{
	double		pages = ceil(baserel->rows / info->page_size);
	double		threshold = CRM_PARALLEL_MIN_PAGES;
	double		divisor;
	double		leader;
	int			workers = 0;
	ForeignPath *path;

	while (pages >= threshold && workers < max_parallel_workers_per_gather)
	{
		workers++;
		threshold *= 3;
	}
	if (workers == 0)
		return;

	/* the share of the work the leader does besides gathering, as costsize.c */
	divisor = workers;
	leader = 1.0 - 0.3 * workers;
	if (parallel_leader_participation && leader > 0)
		divisor += leader;

	path = create_foreignscan_path(root, baserel, NULL, clamp_row_est(baserel->rows / divisor),
								   startup, startup + (total - startup) / divisor,
								   NIL, NULL, NULL, NIL);
	path->path.parallel_aware = true;
	path->path.parallel_workers = workers;
	add_partial_path(baserel, (Path *) path);
}

/*
 * One unparameterized path, plus parameterized paths for joins on id.
 */
static void
crmGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	CrmRelInfo *info = (CrmRelInfo *) baserel->fdw_private;
	Cost		startup;
	Cost		total;
	List	   *seen = NIL;
	ListCell   *lc;
	ForeignPath *path;

	crm_estimate_cost(info, baserel->rows, info->nids >= 0, &startup, &total);
	path = create_foreignscan_path(root, baserel, NULL, baserel->rows,
								   startup, total, NIL, NULL, NULL, NIL);

	/*
	 * Not under a Gather: every process would read the whole listing (the
	 * inner side of a parallel hash join, say), multiplying the requests.
	 * The partial path shares the pages instead; a path by id is safe, each
	 * process then sends the GETs of its own outer rows.
	 */
	path->path.parallel_safe = false;
	add_path(baserel, (Path *) path);

	if (info->resource != CRM_RESOURCE_APPOINTMENTS)
		return;

	/* on a guess of the size, no parallel plan: only once ANALYZE has counted */
	if (baserel->consider_parallel && info->nids < 0 && info->counted)
		crm_add_partial_path(root, baserel, info, startup, total);

	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		if (!join_clause_is_movable_to(ri, baserel))
			continue;
		crm_add_id_param_path(root, baserel, info, ri, &seen);
	}
	if (baserel->has_eclass_joins)
	{
		List	   *clauses = generate_implied_equalities_for_column(root, baserel,
																	 crm_ec_member_is_id,
																	 info,
																	 baserel->lateral_referencers);

		foreach(lc, clauses)
			crm_add_id_param_path(root, baserel, info, lfirst_node(RestrictInfo, lc), &seen);
	}
}

/*
 * May the scan ask for fewer rows per page because of a LIMIT?  Only when the
 * scan alone feeds the LIMIT and the remote applies every clause; otherwise
 * small pages would only cost more requests.
 */
static int
crm_limit_per_page(PlannerInfo *root, RelOptInfo *baserel, CrmRelInfo *info)
{
	Query	   *parse = root->parse;

	if (root->limit_tuples <= 0 || !info->all_pushed ||
		bms_membership(root->all_baserels) != BMS_SINGLETON ||
		parse->sortClause || parse->groupClause || parse->groupingSets ||
		parse->hasAggs || parse->hasWindowFuncs || parse->distinctClause ||
		parse->setOperations || parse->hasTargetSRFs || root->hasHavingQual)
		return info->page_size;
	return (int) Min((double) info->page_size, Max(ceil(root->limit_tuples), 1));
}

static ForeignScan *
crmGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
				  ForeignPath *best_path, List *tlist, List *scan_clauses,
				  Plan *outer_plan)
{
	CrmRelInfo *info = (CrmRelInfo *) baserel->fdw_private;
	List	   *specs = NIL;
	List	   *values = NIL;
	List	   *retrieved = NIL;
	Bitmapset  *attrs = NULL;
	List	   *local_exprs;
	List	   *fdw_private;
	ListCell   *lc;
	int			i;

	/* Every clause is checked locally; pushed ones also go to the API. */
	local_exprs = extract_actual_clauses(scan_clauses, false);
	foreach(lc, scan_clauses)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		CrmPushCond cond;

		if (ri->pseudoconstant)
			continue;
		if (crmPushableCondition(root, baserel, info->fields, info->nfields,
								 ri->clause, &cond))
		{
			specs = lappend(specs, crmSpecToNode(cond.field, cond.op));
			values = lappend(values, cond.value);
		}
	}

	/* Only columns the query reads are converted from JSON. */
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	foreach(lc, local_exprs)
		pull_varattnos((Node *) lfirst(lc), baserel->relid, &attrs);
	for (i = 1; i <= info->nfields; i++)
		if (bms_is_member(i - FirstLowInvalidHeapAttributeNumber, attrs) ||
			bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs))
			retrieved = lappend_int(retrieved, i);

	fdw_private = list_make5(makeInteger(info->resource),
							 makeInteger(info->minutes),
							 makeInteger(crm_limit_per_page(root, baserel, info)),
							 specs,
							 retrieved);

	/*
	 * Under a LIMIT the next page may never be read, and asking for it would
	 * cost a request of the rate limit for nothing.
	 */
	fdw_private = lappend(fdw_private, makeBoolean(root->limit_tuples < 0));
	fdw_private = lappend(fdw_private, makeInteger((int) Min(baserel->rows, PG_INT32_MAX)));

	return make_foreignscan(tlist, local_exprs, baserel->relid, values,
							fdw_private, NIL, NIL, outer_plan);
}

/* ---------- execution ---------- */

static void crm_init_columns(CrmScanState *st, Relation rel, List *retrieved);

static void
crmBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	Relation	rel = node->ss.ss_currentRelation;
	CrmScanState *st = palloc0(sizeof(CrmScanState));
	List	   *retrieved;

	node->fdw_state = st;
	st->resource = intVal(list_nth(fsplan->fdw_private, FdwScanPrivateResource));
	st->minutes = intVal(list_nth(fsplan->fdw_private, FdwScanPrivateMinutes));
	st->per_page = intVal(list_nth(fsplan->fdw_private, FdwScanPrivatePerPage));
	st->read_ahead = boolVal(list_nth(fsplan->fdw_private, FdwScanPrivateReadAhead));
	st->specs = (List *) list_nth(fsplan->fdw_private, FdwScanPrivateSpecs);
	retrieved = (List *) list_nth(fsplan->fdw_private, FdwScanPrivateRetrievedAttrs);

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	/* Outer joins and subqueries scan as the checking user (RLS, views). */
	{
		RangeTblEntry *rte = exec_rt_fetch(fsplan->scan.scanrelid, estate);
		Oid			userid = OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();

		st->conn = crmGetConnInfo(GetForeignTable(RelationGetRelid(rel))->serverid, userid);
	}
	st->value_states = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	crm_init_columns(st, rel, retrieved);
}

/* The columns to convert, and the scan's memory contexts under the current one. */
static void
crm_init_columns(CrmScanState *st, Relation rel, List *retrieved)
{
	ListCell   *lc;
	int			i = 0;

	st->ncols = list_length(retrieved);
	st->cols = palloc0(sizeof(CrmColumn) * Max(st->ncols, 1));
	st->col_values = palloc(sizeof(Datum) * Max(st->ncols, 1));
	st->col_nulls = palloc(sizeof(bool) * Max(st->ncols, 1));
	foreach(lc, retrieved)
		crmInitColumn(&st->cols[i++], rel, (AttrNumber) lfirst_int(lc));

	st->batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
										  "crm_fdw page",
										  ALLOCSET_DEFAULT_SIZES);
	st->seen_cxt = AllocSetContextCreate(CurrentMemoryContext,
										 "crm_fdw rows seen",
										 ALLOCSET_DEFAULT_SIZES);
}

/* Evaluate the pushed values (known) or describe them (EXPLAIN). */
static CrmPushValue *
crm_eval_values(CrmScanState *st, ForeignScanState *node, List *exprs, bool evaluate)
{
	CrmPushValue *values = palloc0(sizeof(CrmPushValue) * Max(list_length(exprs), 1));
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	ListCell   *lc;
	int			i = 0;

	foreach(lc, exprs)
	{
		Expr	   *expr = (Expr *) lfirst(lc);
		CrmPushValue *v = &values[i];

		if (evaluate)
		{
			ExprState  *es = (ExprState *) list_nth(st->value_states, i);

			v->value = ExecEvalExpr(es, econtext, &v->isnull);
			v->known = true;
		}
		else if (IsA(expr, Const))
		{
			v->value = ((Const *) expr)->constvalue;
			v->isnull = ((Const *) expr)->constisnull;
			v->known = true;
		}
		else
		{
			List	   *ctx = deparse_context_for(RelationGetRelationName(node->ss.ss_currentRelation),
												  RelationGetRelid(node->ss.ss_currentRelation));

			v->display = deparse_expression((Node *) expr, ctx, false, false);
		}
		i++;
	}
	return values;
}

static void crm_start_requests(CrmScanState *st);

/* Build this (re)scan's requests from the current parameter values. */
static void
crm_build_scan_requests(CrmScanState *st, ForeignScanState *node)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	MemoryContext oldcxt = MemoryContextSwitchTo(node->ss.ps.state->es_query_cxt);
	CrmPushValue *values;

	values = crm_eval_values(st, node, fsplan->fdw_exprs, true);
	st->requests = crmBuildRequests(st->resource, st->minutes, st->per_page,
									st->specs, values);
	if (st->shown_requests == NIL)
	{
		ListCell   *lc;

		foreach(lc, st->requests)
			st->shown_requests = lappend(st->shown_requests,
										 ((CrmRequest *) lfirst(lc))->path);
	}
	MemoryContextSwitchTo(oldcxt);
	crm_start_requests(st);
}

/*
 * Start walking st->requests.  A parallel plan is made for one paged
 * listing (crm_add_partial_path: no id lookups, one value per filter), whose
 * pages the participants share; a contradiction makes no request at all.
 */
static void
crm_start_requests(CrmScanState *st)
{
	Assert(st->pscan == NULL || st->requests == NIL ||
		   (list_length(st->requests) == 1 && ((CrmRequest *) linitial(st->requests))->paged));
	st->shared_pages = st->pscan != NULL && st->requests != NIL;
	st->ahead_page = 0;
	st->page_claimed = false;
	st->rows_returned = 0;
	st->requests_built = true;
	st->cur_request = list_head(st->requests);
	st->page = 0;
	st->more_pages = true;
	st->rows = NULL;
	st->keys = NULL;
	st->nrows = 0;
	st->csv = NULL;
	st->max_total = -1;
	st->first_total = -1;
	st->last_page_seen = 0;

	/*
	 * A scan has one paged stream at most (pushdown.c sends one value per
	 * filter).  Pages shared among participants use pscan's set instead.
	 */
	MemoryContextReset(st->seen_cxt);
	st->seen = NULL;
	if (!st->shared_pages && st->requests != NIL &&
		((CrmRequest *) linitial(st->requests))->paged)
		st->seen = crm_seen_create(st->seen_cxt, 1024, NULL);
}

/*
 * Map the retrieved columns to the CSV header: by json_path with dots as
 * underscores (payment.paid_at is payment_paid_at), else by column name.
 */
static void
crm_map_csv_columns(CrmScanState *st)
{
	int			i;
	int			j;

	if (st->csv_field == NULL)
		st->csv_field = MemoryContextAlloc(GetMemoryChunkContext(st->cols),
										   sizeof(int) * Max(st->ncols, 1));
	for (i = 0; i < st->ncols; i++)
	{
		char	   *flat = pstrdup(st->cols[i].json_path);
		char	   *p;

		for (p = flat; *p; p++)
			if (*p == '.')
				*p = '_';
		st->csv_field[i] = -1;
		for (j = 0; j < st->csv->nfields && st->csv_field[i] < 0; j++)
			if (strcmp(st->csv->header[j], flat) == 0)
				st->csv_field[i] = j;
		for (j = 0; j < st->csv->nfields && st->csv_field[i] < 0; j++)
			if (strcmp(st->csv->header[j], st->cols[i].attname) == 0)
				st->csv_field[i] = j;
		pfree(flat);
	}
	st->csv_id_field = -1;
	for (j = 0; j < st->csv->nfields; j++)
		if (strcmp(st->csv->header[j], "id") == 0)
			st->csv_id_field = j;
}

/* The path of one page of a request. */
static char *
crm_page_path(CrmRequest *req, int page)
{
	if (!req->paged)
		return pstrdup(req->path);
	return psprintf("%s%cpage=%d", req->path, strchr(req->path, '?') ? '&' : '?', page);
}

/*
 * Claim the next page of a parallel scan, or 0 when none is left.  A page
 * sent ahead is claimed only when a page has told where the listing ends.
 */
static int
crm_claim_page(CrmParallelScan *ps, bool ahead)
{
	int			page = 0;

	SpinLockAcquire(&ps->mutex);
	if (ps->next_page < ps->last_page && !(ahead && ps->last_page == INT_MAX))
		page = ++ps->next_page;
	SpinLockRelease(&ps->mutex);
	return page;
}

/*
 * Tell the other participants what a page said: where the listing ends
 * and its total.  In a parallel scan pages are read
 * in no particular order, so any change of the total may have moved a row
 * past a page already read.
 */
static void
crm_shared_page_seen(CrmParallelScan *ps, int end, int64 total, const char *path)
{
	int64		earlier;

	SpinLockAcquire(&ps->mutex);
	ps->last_page = Min(ps->last_page, end);
	earlier = ps->total;
	if (earlier < 0)
		ps->total = total;
	SpinLockRelease(&ps->mutex);
	if (earlier >= 0 && total != earlier)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("remote listing changed while it was read"),
				 errdetail("GET %s reports " INT64_FORMAT " rows where another page of this parallel scan reported " INT64_FORMAT ", so rows may have moved past the scan.",
						   path, total, earlier),
				 errhint("Run the query again.")));
}

/*
 * Note that every row of the current page of a parallel scan was returned.
 * The one to finish the last page checks that the participants returned as
 * many rows as the listing holds: a row that an update moved from a page
 * not yet read to one read already is in no page, and unlike in a serial
 * scan the row that took its place may be seen only once.
 */
static void
crm_finish_page(CrmScanState *st, const char *path)
{
	CrmParallelScan *ps = st->pscan;
	bool		last;
	int64		total;
	int64		rows;

	SpinLockAcquire(&ps->mutex);
	ps->rows_returned += st->rows_returned;
	ps->pages_done++;
	last = ps->pages_done == ps->next_page && ps->next_page >= ps->last_page;
	total = ps->total;
	rows = ps->rows_returned;
	SpinLockRelease(&ps->mutex);
	st->page_claimed = false;
	st->rows_returned = 0;
	if (last && total >= 0 && rows != total)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("remote listing changed while it was read"),
				 errdetail("The pages of GET %s held " INT64_FORMAT " different rows where the listing reports " INT64_FORMAT ", so rows may have moved past the scan.",
						   path, rows, total),
				 errhint("Run the query again.")));
}

/*
 * At the end of a serial walk of a paged listing.  A row that an update
 * moved from a page not yet read to one read already is in no page, and the
 * row it pushed over the boundary comes back unchanged (skipped as a
 * repeat).  The listing's total does not change, so only a count shows it:
 * the walk must have returned as many rows as its first page's total (rows
 * inserted meanwhile raise the total, rows removed lowered it and failed
 * the walk already).  An insert into a page not yet read, at the same time,
 * hides the loss: only a parallel scan, which fails on any change of the
 * total, sees that.
 */
static void
crm_check_walk_complete(CrmScanState *st, const char *path)
{
	if (st->shared_pages || st->first_total < 0 || st->sampling ||
		st->rows_returned >= st->first_total)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("remote listing changed while it was read"),
			 errdetail("The pages of GET %s held " INT64_FORMAT " different rows where its first page reported " INT64_FORMAT ", so rows may have moved past the scan.",
					   path, st->rows_returned, st->first_total),
			 errhint("Run the query again.")));
}

/*
 * Fetch the next response of the current request into the batch context.
 * Returns false when every request is done.
 */
static bool
crm_fetch_next(CrmScanState *st)
{
	CrmRequest *req;
	CrmHttpResponse resp;
	MemoryContext oldcxt;
	char	   *path;
	bool		ahead;
	int			next = 0;

	if (st->page_claimed)
		crm_finish_page(st, ((CrmRequest *) lfirst(st->cur_request))->path);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (st->cur_request == NULL)
			return false;
		if (st->more_pages && !st->shared_pages)
		{
			next = st->page + 1;
			break;
		}
		if (st->more_pages)
		{
			next = st->ahead_page ? st->ahead_page : crm_claim_page(st->pscan, false);
			st->ahead_page = 0;
			if (next > 0)
				break;
		}
		crm_check_walk_complete(st, ((CrmRequest *) lfirst(st->cur_request))->path);
		st->cur_request = lnext(st->requests, st->cur_request);
		st->page = 0;
		st->more_pages = true;
		st->max_total = -1;
		st->first_total = -1;
		st->rows_returned = 0;
		st->last_page_seen = 0;
	}
	req = (CrmRequest *) lfirst(st->cur_request);

	MemoryContextReset(st->batch_cxt);
	st->rows = NULL;
	st->keys = NULL;
	st->nrows = 0;
	st->csv = NULL;
	oldcxt = MemoryContextSwitchTo(st->batch_cxt);

	st->page = next;
	path = crm_page_path(req, st->page);

	crmHttpGet(st->conn, path, req->allow_404, &resp, &st->stats);
	/*
	 * The server prepares the next page while this one is parsed and read:
	 * sent now when the last pagination seen says it exists, else after the
	 * parse if this page says so.
	 */
	if (st->shared_pages)
	{
		if (st->read_ahead)
			st->ahead_page = crm_claim_page(st->pscan, true);
		ahead = st->ahead_page > 0;
		if (ahead)
			crmHttpPrefetch(st->conn, crm_page_path(req, st->ahead_page));
	}
	else
	{
		ahead = req->paged && st->read_ahead && st->page < st->last_page_seen;
		if (ahead)
			crmHttpPrefetch(st->conn, crm_page_path(req, st->page + 1));
	}
	st->more_pages = false;
	st->row_index = 0;
	st->cur_path = path;

	if (resp.status == 404)
	{
		/* GET /appointments/{id}: that appointment does not exist. */
	}
	else if (st->resource == CRM_RESOURCE_EXPORT)
	{
		st->csv = crmCsvParse(resp.body, resp.body_len);
		st->csv_row = list_head(st->csv->rows);
		crm_map_csv_columns(st);
	}
	else
	{
		CrmPage		page;

		/* a scan returning no column needs only the rows' keys */
		if (st->ncols == 0 && st->resource != CRM_RESOURCE_STATS &&
			crmSkimPage(resp.body, resp.body_len, &page))
			st->stats.pages_skimmed++;
		else
			crmParsePage(crmJsonParse(resp.body, resp.body_len, path),
						 st->resource, path, &page);
		st->rows = page.rows;
		st->keys = page.keys;
		st->nrows = page.nrows;
		/*
		 * Follow pages while the remote says there are more and the page was
		 * not empty; an empty page ends the walk even if "total" grew.
		 */
		if (req->paged && page.nrows > 0)
		{
			/*
			 * Our page number, not the echoed one: a server that keeps
			 * answering page 1 must not loop us forever.
			 */
			if (page.has_pagination)
				st->more_pages = st->page < page.last_page;
			else
				st->more_pages = page.nrows >= (size_t) st->per_page;
		}
		if (st->shared_pages)
		{
			/* without a total, rows lost between pages would go unnoticed */
			if (!page.has_pagination)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_REPLY_HANDLE),
						 errmsg("response to GET %s has no \"pagination\", which a parallel scan needs",
								path),
						 errhint("Set max_parallel_workers_per_gather to 0 for this query.")));
			st->page_claimed = true;
			crm_shared_page_seen(st->pscan,
								 page.nrows == 0 ? st->page - 1 : (int) Min(page.last_page, INT_MAX - 1),
								 page.total, path);
			st->more_pages = true;
			if (st->read_ahead && !ahead &&
				(st->ahead_page = crm_claim_page(st->pscan, true)) > 0)
				crmHttpPrefetch(st->conn, crm_page_path(req, st->ahead_page));
		}
		else if (req->paged && page.has_pagination)
		{
			/* a row left the listing: rows behind it moved past the scan */
			if (page.total < st->max_total && !st->sampling)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("remote listing changed while it was read"),
						 errdetail("GET %s reports " INT64_FORMAT " rows where an earlier page reported " INT64_FORMAT ", so rows may have moved past the scan.",
								   path, page.total, st->max_total),
						 errhint("Run the query again.")));
			if (st->first_total < 0)
				st->first_total = page.total;
			st->max_total = Max(st->max_total, page.total);
			st->last_page_seen = page.last_page;
		}
		if (!st->shared_pages && st->more_pages && st->read_ahead && !ahead)
			crmHttpPrefetch(st->conn, crm_page_path(req, st->page + 1));
	}
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/*
 * Grow a partition of the shared rows seen to twice its slots, or to its
 * first.  Freed slots are seldom reused (the next growth needs more), so
 * sizing the first for the planner's rows keeps the memory touched near one
 * table's.
 */
static void
crm_shared_seen_grow(dsa_area *area, CrmParallelScan *ps, CrmSeenPartition *part)
{
	uint32		nslots = part->nslots == 0 ? ps->first_slots : part->nslots * 2;
	dsa_pointer new = dsa_allocate_extended(area, sizeof(CrmSeenSlot) * (Size) nslots,
											DSA_ALLOC_ZERO | DSA_ALLOC_HUGE);
	CrmSeenSlot *to = dsa_get_address(area, new);
	uint32		i;

	if (part->nslots > 0)
	{
		CrmSeenSlot *from = dsa_get_address(area, part->slots);

		for (i = 0; i < part->nslots; i++)
		{
			uint32		j;

			if (!from[i].used)
				continue;
			for (j = (crm_id_hash(from[i].id) / CRM_SEEN_PARTITIONS) & (nslots - 1);
				 to[j].used; j = (j + 1) & (nslots - 1))
				;
			to[j] = from[i];
		}
		dsa_free(area, part->slots);
	}
	part->slots = new;
	part->nslots = nslots;
}

/*
 * Add id to the rows a parallel scan has seen.  True when it was there
 * already; *earlier is the version it was first seen with.
 */
static bool
crm_shared_seen_insert(CrmScanState *st, int64 id, uint32 version, uint32 *earlier)
{
	uint32		hash = crm_id_hash(id);
	CrmSeenPartition *part = &st->pscan->seen[hash % CRM_SEEN_PARTITIONS];
	CrmSeenSlot *slots;
	uint32		i;
	bool		found;

	LWLockAcquire(&part->lock, LW_EXCLUSIVE);
	if (part->nused >= part->nslots / 4 * 3)
		crm_shared_seen_grow(st->area, st->pscan, part);
	slots = dsa_get_address(st->area, part->slots);
	for (i = (hash / CRM_SEEN_PARTITIONS) & (part->nslots - 1);
		 slots[i].used && slots[i].id != id; i = (i + 1) & (part->nslots - 1))
		;
	found = slots[i].used;
	if (!found)
	{
		slots[i].id = id;
		slots[i].version = version;
		slots[i].used = true;
		part->nused++;
	}
	*earlier = slots[i].version;
	LWLockRelease(&part->lock);
	return found;
}

/*
 * Note a row of a paged scan.  False when it was returned already,
 * unchanged (rows shifted forward: skip it).  A row that comes back changed
 * has moved in the listing, which may have pushed another past the scan:
 * that fails the scan rather than return a short result.
 */
static bool
crm_check_seen(CrmScanState *st, const CrmRowKey *key)
{
	uint32		earlier;
	bool		found;

	if (!key->has_id)
		return true;
	if (st->shared_pages)
		found = crm_shared_seen_insert(st, key->id, key->version, &earlier);
	else
	{
		CrmSeenEntry *entry = crm_seen_insert(st->seen, key->id, &found);

		if (!found)
			entry->version = key->version;
		earlier = entry->version;
	}
	if (!found)
		return true;
	if (earlier != key->version && !st->sampling)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("remote listing changed while it was read"),
				 errdetail("Appointment " INT64_FORMAT " came back changed in GET %s, so rows may have moved past the scan.",
						   key->id, st->cur_path),
				 errhint("Run the query again.")));
	return false;
}

/* Put the next row of the current response into slot; false if none left. */
static bool
crm_next_row(CrmScanState *st, TupleTableSlot *slot)
{
	int			i;

	if (st->row_index < st->nrows)
	{
		size_t		r = st->row_index++;
		json_t	   *obj = st->rows ? json_array_get(st->rows, r) : NULL;

		if (st->seen || st->shared_pages)
		{
			CrmRowKey	key;

			if (obj)
				crmJsonRowKey(obj, &key);
			else
				key = st->keys[r];
			if (!crm_check_seen(st, &key))
				return crm_next_row(st, slot);
		}
		if (obj)
			crmJsonObjectToRow(obj, st->cols, st->ncols, st->col_values, st->col_nulls);
		st->rows_returned++;
	}
	else if (st->csv && st->csv_row)
	{
		char	  **fields = (char **) lfirst(st->csv_row);
		int64		row_id = st->csv_id_field >= 0 ?
			crmRowIdFromText(fields[st->csv_id_field]) : -1;

		st->csv_row = lnext(st->csv->rows, st->csv_row);
		for (i = 0; i < st->ncols; i++)
		{
			int			f = st->csv_field[i];

			st->col_values[i] = crmTextToDatum(f >= 0 ? fields[f] : NULL,
											   &st->cols[i], row_id, &st->col_nulls[i]);
		}
	}
	else
		return false;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (i = 0; i < st->ncols; i++)
	{
		AttrNumber	attnum = st->cols[i].attnum;

		slot->tts_values[attnum - 1] = st->col_values[i];
		slot->tts_isnull[attnum - 1] = st->col_nulls[i];
	}
	ExecStoreVirtualTuple(slot);
	return true;
}

/* Put the scan's next row into slot; false when there is none. */
static bool
crm_scan_next(CrmScanState *st, TupleTableSlot *slot)
{
	for (;;)
	{
		bool		found;
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();
		/* Row values live with their page in the batch context. */
		oldcxt = MemoryContextSwitchTo(st->batch_cxt);
		found = crm_next_row(st, slot);
		MemoryContextSwitchTo(oldcxt);
		if (found)
			return true;
		if (!crm_fetch_next(st))
		{
			ExecClearTuple(slot);
			return false;
		}
	}
}

static TupleTableSlot *
crmIterateForeignScan(ForeignScanState *node)
{
	CrmScanState *st = (CrmScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (!st->requests_built)
		crm_build_scan_requests(st, node);
	crm_scan_next(st, slot);
	return slot;
}

static void
crmReScanForeignScan(ForeignScanState *node)
{
	CrmScanState *st = (CrmScanState *) node->fdw_state;

	/* Parameters may have changed: rebuild the requests on the next fetch. */
	crmHttpCancelPrefetch();
	st->requests_built = false;
	st->rows = NULL;
	st->keys = NULL;
	st->nrows = 0;
	st->csv = NULL;
	MemoryContextReset(st->batch_cxt);
}

static void
crmEndForeignScan(ForeignScanState *node)
{
	/* The batch context dies with the query; the curl handle is kept for reuse. */
	crmHttpCancelPrefetch();
}

static void
crmExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	CrmScanState *st = (CrmScanState *) node->fdw_state;
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	List	   *paths = NIL;
	ListCell   *lc;
	int			shown = 0;

	if (st->shown_requests != NIL || st->requests_built)
		paths = st->shown_requests;
	else
	{
		CrmPushValue *values = crm_eval_values(st, node, fsplan->fdw_exprs, false);
		List	   *requests = crmBuildRequests(st->resource, st->minutes, st->per_page,
												st->specs, values);

		foreach(lc, requests)
			paths = lappend(paths, ((CrmRequest *) lfirst(lc))->path);
	}

	if (paths == NIL)
		ExplainPropertyText("Remote Request", "none (the conditions cannot match)", es);
	foreach(lc, paths)
	{
		char	   *line;

		if (shown++ == CRM_EXPLAIN_MAX_REQUESTS)
		{
			ExplainPropertyInteger("Remote Requests Not Shown", NULL,
								   list_length(paths) - CRM_EXPLAIN_MAX_REQUESTS, es);
			break;
		}
		line = psprintf("GET %s", (char *) lfirst(lc));
		ExplainPropertyText("Remote Request", line, es);
	}

	if (es->analyze)
	{
		ExplainPropertyInteger("Remote Requests Sent", NULL, st->stats.requests, es);
		ExplainPropertyInteger("Remote Pages", NULL, st->stats.pages, es);
		/* only a scan that returns no column skims */
		if (st->stats.pages_skimmed > 0)
			ExplainPropertyInteger("Remote Pages Skimmed", NULL, st->stats.pages_skimmed, es);
		ExplainPropertyInteger("Remote Retries", NULL, st->stats.retries, es);
		ExplainPropertyInteger("Remote Bytes Received", NULL, st->stats.bytes, es);
	}
}

/* ---------- parallel scans ---------- */

/* The options of the server of foreign table relid. */
static void
crm_table_server_options(Oid relid, CrmServerOptions *sopts)
{
	crmGetServerOptions(GetForeignServer(GetForeignTable(relid)->serverid), sopts);
}

/*
 * Each process's client-side rate limit is its own, so a server with one
 * would see it exceeded by the participants together: only without it may a
 * scan run in parallel workers.
 */
static bool
crmIsForeignScanParallelSafe(PlannerInfo *root, RelOptInfo *rel, RangeTblEntry *rte)
{
	CrmServerOptions sopts;

	crm_table_server_options(rte->relid, &sopts);
	return sopts.rate_limit_per_minute == 0;
}

static Size
crmEstimateDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt)
{
	return sizeof(CrmParallelScan);
}

/*
 * Reset what the participants share, for a first run or a rescan (which
 * frees the last run's rows seen).  Without a DSA (no dynamic shared memory
 * could be had) no worker runs: the leader then scans as in a serial plan.
 * The partitions' locks live in the query's DSA segment, so they go by its
 * tranche: one of their own would take an id from the cluster-wide counter
 * for every backend, never given back.
 */
static void
crm_parallel_reset(CrmScanState *st, CrmParallelScan *ps, dsa_area *area, bool rescan)
{
	int			i;

	if (area == NULL)
		return;
	for (i = 0; i < CRM_SEEN_PARTITIONS; i++)
	{
		CrmSeenPartition *part = &ps->seen[i];

		if (rescan && part->nslots > 0)
			dsa_free(area, part->slots);
		LWLockInitialize(&part->lock, LWTRANCHE_PARALLEL_QUERY_DSA);
		part->slots = InvalidDsaPointer;
		part->nslots = 0;
		part->nused = 0;
	}
	SpinLockInit(&ps->mutex);
	ps->next_page = 0;
	ps->last_page = INT_MAX;
	ps->total = -1;
	ps->pages_done = 0;
	ps->rows_returned = 0;
	st->pscan = ps;
	st->area = area;
}

static void
crmInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt, void *coordinate)
{
	CrmParallelScan *ps = (CrmParallelScan *) coordinate;
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;

	memset(&ps->stats, 0, sizeof(CrmHttpStats));
	ps->first_slots = crm_seen_first_slots(intVal(list_nth(fsplan->fdw_private,
														   FdwScanPrivateRows)));
	crm_parallel_reset((CrmScanState *) node->fdw_state, ps, node->ss.ps.state->es_query_dsa,
					   false);
}

/* Before a rescan's workers start: the old ones are gone, and their rows seen. */
static void
crmReInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt, void *coordinate)
{
	CrmScanState *st = (CrmScanState *) node->fdw_state;

	if (st->pscan == NULL)
		return;
	crm_parallel_reset(st, (CrmParallelScan *) coordinate, node->ss.ps.state->es_query_dsa,
					   true);
}

static void
crmInitializeWorkerForeignScan(ForeignScanState *node, shm_toc *toc, void *coordinate)
{
	CrmScanState *st = (CrmScanState *) node->fdw_state;
	CrmParallelScan *ps = (CrmParallelScan *) coordinate;

	st->area = node->ss.ps.state->es_query_dsa;
	st->pscan = ps;
}

static void
crm_add_stats(CrmHttpStats *to, CrmHttpStats *from)
{
	to->requests += from->requests;
	to->retries += from->retries;
	to->pages += from->pages;
	to->pages_skimmed += from->pages_skimmed;
	to->bytes += from->bytes;
	to->rate_limited += from->rate_limited;
	memset(from, 0, sizeof(CrmHttpStats));
}

/*
 * Called while the shared memory is still there: a worker leaves its
 * counters in it, and the leader, whose node shuts down after the workers'
 * when the Gather above has read them to the end, takes them for EXPLAIN.
 * Under a LIMIT the leader may shut down first: then its EXPLAIN ANALYZE
 * misses the requests the workers send after that.
 */
static void
crmShutdownForeignScan(ForeignScanState *node)
{
	CrmScanState *st = (CrmScanState *) node->fdw_state;
	CrmParallelScan *ps = st ? st->pscan : NULL;

	if (ps == NULL)
		return;
	SpinLockAcquire(&ps->mutex);
	if (IsParallelWorker())
		crm_add_stats(&ps->stats, &st->stats);
	else
		crm_add_stats(&st->stats, &ps->stats);
	SpinLockRelease(&ps->mutex);
}

/* ---------- ANALYZE ---------- */

/*
 * Read every row the table's resource lists, as a scan without conditions
 * does, and keep a random sample of targrows of them.  The count of rows
 * becomes reltuples, which the planner's estimates start from.
 */
static int
crm_acquire_sample_rows(Relation rel, int elevel, HeapTuple *rows, int targrows,
						double *totalrows, double *totaldeadrows)
{
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	CrmScanState *st = palloc0(sizeof(CrmScanState));
	TupleTableSlot *slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsVirtual);
	CrmServerOptions sopts;
	ReservoirStateData rstate;
	List	   *retrieved = NIL;
	double		rowstoskip = -1;
	double		nrows = 0;
	int			nsampled = 0;
	int			i;

	crm_table_server_options(relid, &sopts);
	st->resource = crmGetTableResource(relid, &st->minutes);
	st->per_page = sopts.page_size;
	st->read_ahead = true;
	st->sampling = true;
	st->conn = crmGetConnInfo(GetForeignTable(relid)->serverid, GetUserId());
	for (i = 0; i < tupdesc->natts; i++)
		if (!TupleDescAttr(tupdesc, i)->attisdropped)
			retrieved = lappend_int(retrieved, i + 1);
	crm_init_columns(st, rel, retrieved);
	st->requests = crmBuildRequests(st->resource, st->minutes, st->per_page, NIL, NULL);
	crm_start_requests(st);

	reservoir_init_selection_state(&rstate, targrows);
	while (crm_scan_next(st, slot))
	{
		nrows += 1;
		if (nsampled < targrows)
			rows[nsampled++] = ExecCopySlotHeapTuple(slot);
		else
		{
			/* Vitter's algorithm, as ANALYZE samples heap rows */
			if (rowstoskip < 0)
				rowstoskip = reservoir_get_next_S(&rstate, nrows, targrows);
			if (rowstoskip <= 0)
			{
				int			k = (int) (targrows * sampler_random_fract(&rstate.randstate));

				heap_freetuple(rows[k]);
				rows[k] = ExecCopySlotHeapTuple(slot);
			}
			rowstoskip -= 1;
		}
	}
	crmHttpCancelPrefetch();
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(st->batch_cxt);
	MemoryContextDelete(st->seen_cxt);

	*totalrows = nrows;
	*totaldeadrows = 0;
	ereport(elevel,
			(errmsg("\"%s\": " INT64_FORMAT " remote requests read %.0f rows, %d rows in sample",
					RelationGetRelationName(rel), st->stats.requests, nrows, nsampled)));
	return nsampled;
}

static bool
crmAnalyzeForeignTable(Relation relation, AcquireSampleRowsFunc *func,
					   BlockNumber *totalpages)
{
	CrmServerOptions sopts;
	double		rows = relation->rd_rel->reltuples;

	/* what inheritance ANALYZE weighs partitions by: pages of the listing */
	crm_table_server_options(RelationGetRelid(relation), &sopts);
	*func = crm_acquire_sample_rows;
	*totalpages = rows > 0 ? (BlockNumber) Min(ceil(rows / sopts.page_size), MaxBlockNumber) : 1;
	return true;
}
