/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *		  Which WHERE clauses the API can apply, and the requests they become.
 *
 * At plan time a clause is "pushable" when it compares a column that stands
 * for an API filter with a value that does not depend on the scanned row.
 * The value is kept as an expression and evaluated at execution, so stable
 * functions and parameters of generic plans work.  At execution the values
 * are folded into query parameters; the API's filtering is only ever used to
 * fetch less: every clause is also checked locally, so a lax, strict or
 * differently-clocked remote can never change a result.  Whenever a value is
 * one the API might interpret differently from PostgreSQL, the request is
 * widened (or the filter not sent) rather than risk losing a row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"


/* The vocabularies the API documents; other values are filtered locally only. */
static const char *const crm_status_values[] = {
	"pending", "confirmed", "in_progress", "completed", "cancelled", "no_show", NULL
};
static const char *const crm_location_values[] = {"melbourne", "adelaide", NULL};
static const char *const crm_enquiry_values[] = {
	"tr", "tourist", "education", "pr_complex", NULL
};

/* A filter with a fixed vocabulary: its parameter and allowed values. */
typedef struct CrmEnumFilter
{
	CrmField	field;
	const char *param;
	const char *const *vocabulary;
} CrmEnumFilter;

static const CrmEnumFilter crm_enum_filters[] = {
	{CRM_FIELD_STATUS, "status", crm_status_values},
	{CRM_FIELD_LOCATION, "location", crm_location_values},
	{CRM_FIELD_ENQUIRY_TYPE, "enquiry_type", crm_enquiry_values},
};

#define CRM_NUM_ENUM_FILTERS lengthof(crm_enum_filters)

/*
 * Does a value of type typid stand for field's values?  A domain stands for
 * what its base type does: its column is compared with the base type's
 * operators (crm_strategy_op refuses others), and its constraints only
 * restrict which values it holds.
 */
static bool
crm_field_type_ok(CrmField field, Oid typid)
{
	typid = getBaseType(typid);
	switch (field)
	{
		case CRM_FIELD_DATE:
		case CRM_FIELD_PERIOD_START:
		case CRM_FIELD_PERIOD_END:
			return typid == DATEOID;
		case CRM_FIELD_CREATED:
		case CRM_FIELD_UPDATED:
			return typid == TIMESTAMPTZOID;
		case CRM_FIELD_STATUS:
		case CRM_FIELD_LOCATION:
		case CRM_FIELD_ENQUIRY_TYPE:
			return typid == TEXTOID || typid == VARCHAROID;
		case CRM_FIELD_ID:
			return typid == INT8OID || typid == INT4OID || typid == INT2OID;
		case CRM_FIELD_NONE:
			break;
	}
	return false;
}

/*
 * The API filter that a column of a table of resource stands for.
 * appointment_datetime stands for none: start_date and end_date filter on
 * appointment_date, and nothing promises the two agree (either may be null).
 */
CrmField
crmColumnField(CrmResource resource, const char *json_path, Oid typid)
{
	CrmField	field = CRM_FIELD_NONE;

	if (resource == CRM_RESOURCE_STATS)
	{
		if (strcmp(json_path, "period.start_date") == 0)
			field = CRM_FIELD_PERIOD_START;
		else if (strcmp(json_path, "period.end_date") == 0)
			field = CRM_FIELD_PERIOD_END;
	}
	else if (resource != CRM_RESOURCE_RECENT)
	{
		if (strcmp(json_path, "appointment_date") == 0)
			field = CRM_FIELD_DATE;
		else if (strcmp(json_path, "created_at") == 0)
			field = CRM_FIELD_CREATED;
		else if (strcmp(json_path, "updated_at") == 0)
			field = CRM_FIELD_UPDATED;
		else if (strcmp(json_path, "status") == 0)
			field = CRM_FIELD_STATUS;
		else if (strcmp(json_path, "location") == 0)
			field = CRM_FIELD_LOCATION;
		else if (strcmp(json_path, "enquiry_type") == 0)
			field = CRM_FIELD_ENQUIRY_TYPE;
		/* The export has no id filter; only the list resource can GET by id. */
		else if (resource == CRM_RESOURCE_APPOINTMENTS && strcmp(json_path, "id") == 0)
			field = CRM_FIELD_ID;
	}
	return crm_field_type_ok(field, typid) ? field : CRM_FIELD_NONE;
}

/* Is op (strategy already resolved) meaningful for field? */
static bool
crm_op_allowed(CrmField field, CrmOp op)
{
	switch (field)
	{
		case CRM_FIELD_DATE:
			return op != CRM_OP_IN;

			/*
			 * One value only: a request per value of an IN list would lose a
			 * row whose value changes between two of them, as it moves from a
			 * listing not yet read to one read already.
			 */
		case CRM_FIELD_STATUS:
		case CRM_FIELD_LOCATION:
		case CRM_FIELD_ENQUIRY_TYPE:
			return op == CRM_OP_EQ;
		case CRM_FIELD_ID:
			return op == CRM_OP_EQ || op == CRM_OP_IN;
		case CRM_FIELD_CREATED:
		case CRM_FIELD_UPDATED:
			return op == CRM_OP_GT || op == CRM_OP_GE || op == CRM_OP_EQ;
		case CRM_FIELD_PERIOD_START:
		case CRM_FIELD_PERIOD_END:
			return op == CRM_OP_EQ;
		case CRM_FIELD_NONE:
			break;
	}
	return false;
}

/*
 * The field of a plain column of baserel, or CRM_FIELD_NONE.  Binary-compatible
 * casts (varchar to text) are looked through.
 */
static CrmField
crm_var_field(Node *node, RelOptInfo *baserel, const CrmField *fields, int nfields)
{
	Var		   *var;

	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node == NULL || !IsA(node, Var))
		return CRM_FIELD_NONE;
	var = (Var *) node;
	if (var->varno != baserel->relid || var->varlevelsup != 0 ||
		var->varattno <= 0 || var->varattno > nfields)
		return CRM_FIELD_NONE;
	return fields[var->varattno - 1];
}

/*
 * Can the value side be evaluated once per scan, before any row is read?
 * It must not read the scanned relation, change between calls, or hide a
 * correlated subquery.
 */
static bool
crm_value_ok(PlannerInfo *root, RelOptInfo *baserel, Node *value)
{
	if (bms_is_member(baserel->relid, pull_varnos(root, value)))
		return false;
	if (contain_volatile_functions(value) || contain_subplans(value))
		return false;
	return true;
}

static bool
crm_is_int_type(Oid typid)
{
	return typid == INT2OID || typid == INT4OID || typid == INT8OID;
}

/*
 * Map a btree strategy to our operator.  Cross-type comparisons are refused
 * but for integers (id = 42 compares bigint with integer).
 */
static bool
crm_strategy_op(Oid opno, Oid coltype, bool var_on_right, CrmOp *op)
{
	TypeCacheEntry *tce = lookup_type_cache(coltype, TYPECACHE_BTREE_OPFAMILY);
	int			strategy;
	Oid			lefttype;
	Oid			righttype;

	if (!OidIsValid(tce->btree_opf) || !op_in_opfamily(opno, tce->btree_opf))
		return false;
	get_op_opfamily_properties(opno, tce->btree_opf, false,
							   &strategy, &lefttype, &righttype);
	if (crm_is_int_type(coltype))
	{
		if (!crm_is_int_type(lefttype) || !crm_is_int_type(righttype))
			return false;
	}
	else if (lefttype != coltype || righttype != coltype)
		return false;
	switch (strategy)
	{
		case BTLessStrategyNumber:
			*op = var_on_right ? CRM_OP_GT : CRM_OP_LT;
			break;
		case BTLessEqualStrategyNumber:
			*op = var_on_right ? CRM_OP_GE : CRM_OP_LE;
			break;
		case BTEqualStrategyNumber:
			*op = CRM_OP_EQ;
			break;
		case BTGreaterEqualStrategyNumber:
			*op = var_on_right ? CRM_OP_LE : CRM_OP_GE;
			break;
		case BTGreaterStrategyNumber:
			*op = var_on_right ? CRM_OP_LT : CRM_OP_GT;
			break;
		default:
			return false;
	}
	return true;
}

/* The type the column is compared as: text for varchar columns. */
static Oid
crm_compare_type(CrmField field, Node *colexpr)
{
	switch (field)
	{
		case CRM_FIELD_STATUS:
		case CRM_FIELD_LOCATION:
		case CRM_FIELD_ENQUIRY_TYPE:
			return TEXTOID;
		default:
			return exprType(colexpr);
	}
}

/*
 * Is clause a filter the API can apply?  Fills cond when it is.
 */
bool
crmPushableCondition(PlannerInfo *root, RelOptInfo *baserel,
					 const CrmField *fields, int nfields,
					 Expr *clause, CrmPushCond *cond)
{
	Node	   *colexpr;
	Node	   *value;
	Oid			opno;
	Oid			collid;
	bool		var_on_right = false;
	CrmField	field;
	CrmOp		op;

	if (IsA(clause, OpExpr))
	{
		OpExpr	   *oe = (OpExpr *) clause;

		if (list_length(oe->args) != 2)
			return false;
		colexpr = linitial(oe->args);
		value = lsecond(oe->args);
		field = crm_var_field(colexpr, baserel, fields, nfields);
		if (field == CRM_FIELD_NONE)
		{
			colexpr = lsecond(oe->args);
			value = linitial(oe->args);
			var_on_right = true;
			field = crm_var_field(colexpr, baserel, fields, nfields);
		}
		opno = oe->opno;
		collid = oe->inputcollid;
		if (field == CRM_FIELD_NONE ||
			!crm_strategy_op(opno, crm_compare_type(field, colexpr), var_on_right, &op))
			return false;
	}
	else if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *sa = (ScalarArrayOpExpr *) clause;
		CrmOp		elemop;

		if (!sa->useOr || list_length(sa->args) != 2)
			return false;
		colexpr = linitial(sa->args);
		value = lsecond(sa->args);
		field = crm_var_field(colexpr, baserel, fields, nfields);
		collid = sa->inputcollid;
		if (field == CRM_FIELD_NONE ||
			!crm_strategy_op(sa->opno, crm_compare_type(field, colexpr), false, &elemop) ||
			elemop != CRM_OP_EQ)
			return false;
		op = CRM_OP_IN;
	}
	else
		return false;

	/* A nondeterministic collation could match values the API would not. */
	if (OidIsValid(collid) && collid != DEFAULT_COLLATION_OID &&
		!get_collation_isdeterministic(collid))
		return false;
	/*
	 * A binary-compatible cast may have made the column another type (id::oid
	 * = 42, which PostgreSQL compares as oid): not the filter's values then.
	 */
	if (!crm_field_type_ok(field, exprType(colexpr)) ||
		!crm_op_allowed(field, op) || !crm_value_ok(root, baserel, value))
		return false;

	/* Ids are evaluated as bigint whatever the integer type of the value. */
	if (field == CRM_FIELD_ID && op == CRM_OP_EQ && exprType(value) != INT8OID)
		value = eval_const_expressions(root,
									   coerce_to_target_type(NULL, value, exprType(value),
															 INT8OID, -1, COERCION_IMPLICIT,
															 COERCE_IMPLICIT_CAST, -1));
	cond->field = field;
	cond->op = op;
	cond->value = (Expr *) value;
	return true;
}

/* fdw_private keeps only copyable Nodes: a spec is a two-Integer list. */
Node *
crmSpecToNode(CrmField field, CrmOp op)
{
	return (Node *) list_make2(makeInteger(field), makeInteger(op));
}

void
crmSpecFromNode(Node *node, CrmField *field, CrmOp *op)
{
	List	   *l = (List *) node;

	*field = (CrmField) intVal(linitial(l));
	*op = (CrmOp) intVal(lsecond(l));
}

/* ---------- execution: values to requests ---------- */

/* What the values of one scan ask of the API, merged over all clauses. */
typedef struct CrmFilterSet
{
	bool		empty;			/* contradictory: no request at all */
	bool		has_lo;
	bool		has_hi;
	DateADT		lo;
	DateADT		hi;
	bool		has_created;
	bool		has_updated;
	TimestampTz created_after;
	TimestampTz updated_after;
	/* per enum filter: its one value (crm_op_allowed), or NULL */
	const char *enum_value[CRM_NUM_ENUM_FILTERS];
	bool		enum_unpushable[CRM_NUM_ENUM_FILTERS];
	bool		has_ids;
	List	   *ids;			/* of int64 as Integer-free: palloc'd int64s */
} CrmFilterSet;

static void
crm_raise_lo(CrmFilterSet *fs, DateADT d)
{
	if (!fs->has_lo || d > fs->lo)
		fs->lo = d;
	fs->has_lo = true;
}

static void
crm_lower_hi(CrmFilterSet *fs, DateADT d)
{
	if (!fs->has_hi || d < fs->hi)
		fs->hi = d;
	fs->has_hi = true;
}

/*
 * The ids of an id condition: the bigint of "=" (crmPushableCondition made
 * it one), or the elements of an integer array.  NULL elements never compare
 * equal, so they are dropped.
 */
static List *
crm_id_values(CrmOp op, Datum value)
{
	List	   *result = NIL;
	ArrayType  *arr;
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (op != CRM_OP_IN)
	{
		int64	   *v = palloc(sizeof(int64));

		*v = DatumGetInt64(value);
		return list_make1(v);
	}
	arr = DatumGetArrayTypeP(value);
	elemtype = ARR_ELEMTYPE(arr);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		int64	   *v;

		if (nulls[i])
			continue;
		v = palloc(sizeof(int64));
		*v = elemtype == INT2OID ? DatumGetInt16(elems[i]) :
			elemtype == INT4OID ? DatumGetInt32(elems[i]) : DatumGetInt64(elems[i]);
		result = lappend(result, v);
	}
	return result;
}

static bool
crm_in_vocabulary(const char *value, const char *const *vocabulary)
{
	for (; *vocabulary; vocabulary++)
		if (strcmp(value, *vocabulary) == 0)
			return true;
	return false;
}

static int
crm_cmp_int64(const ListCell *a, const ListCell *b)
{
	int64		x = *(int64 *) lfirst(a);
	int64		y = *(int64 *) lfirst(b);

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Sorted, duplicate-free ids of a that are also in b (b NIL: all of a). */
static List *
crm_merge_ids(List *a, List *b, bool b_set)
{
	List	   *result = NIL;
	ListCell   *la;

	list_sort(a, crm_cmp_int64);
	foreach(la, a)
	{
		int64		v = *(int64 *) lfirst(la);
		bool		keep = !b_set;
		ListCell   *lb;

		if (result != NIL && *(int64 *) llast(result) == v)
			continue;
		if (b_set)
			foreach(lb, b)
				if (*(int64 *) lfirst(lb) == v)
				{
					keep = true;
					break;
				}
		if (keep)
			result = lappend(result, lfirst(la));
	}
	return result;
}

/*
 * created_after/updated_after value for "column > ts" or ">= ts": one whole
 * second earlier, so a strict or second-granular remote still sends every row
 * at ts.  The local check drops the extra ones.
 */
TimestampTz
crmAfterBound(TimestampTz ts)
{
	TimestampTz floor_sec = ts - ts % USECS_PER_SEC;

	if (ts < 0 && ts % USECS_PER_SEC != 0)
		floor_sec -= USECS_PER_SEC;
	return floor_sec - USECS_PER_SEC;
}

/* Fold one evaluated condition into fs. */
static void
crm_fold_condition(CrmFilterSet *fs, CrmField field, CrmOp op, CrmPushValue *v)
{
	int			i;

	if (v->isnull)
	{
		/* Comparisons with NULL are never true. */
		fs->empty = true;
		return;
	}
	switch (field)
	{
		case CRM_FIELD_DATE:
		case CRM_FIELD_PERIOD_START:
		case CRM_FIELD_PERIOD_END:
			{
				DateADT		d = DatumGetDateADT(v->value);

				if (DATE_NOT_FINITE(d))
					return;
				if (field == CRM_FIELD_PERIOD_START)
				{
					if (fs->has_lo && fs->lo != d)
						fs->empty = true;
					crm_raise_lo(fs, d);
					return;
				}
				if (field == CRM_FIELD_PERIOD_END)
				{
					if (fs->has_hi && fs->hi != d)
						fs->empty = true;
					crm_lower_hi(fs, d);
					return;
				}
				if (op == CRM_OP_EQ || op == CRM_OP_GE)
					crm_raise_lo(fs, d);
				if (op == CRM_OP_GT)
					crm_raise_lo(fs, d + 1);
				if (op == CRM_OP_EQ || op == CRM_OP_LE)
					crm_lower_hi(fs, d);
				if (op == CRM_OP_LT)
					crm_lower_hi(fs, d - 1);
				return;
			}
		case CRM_FIELD_CREATED:
		case CRM_FIELD_UPDATED:
			{
				TimestampTz ts = DatumGetTimestampTz(v->value);
				TimestampTz after;

				if (TIMESTAMP_NOT_FINITE(ts))
					return;
				after = crmAfterBound(ts);
				if (field == CRM_FIELD_CREATED)
				{
					if (!fs->has_created || after > fs->created_after)
						fs->created_after = after;
					fs->has_created = true;
				}
				else
				{
					if (!fs->has_updated || after > fs->updated_after)
						fs->updated_after = after;
					fs->has_updated = true;
				}
				return;
			}
		case CRM_FIELD_ID:
			{
				List	   *ids = crm_id_values(op, v->value);

				fs->ids = crm_merge_ids(ids, fs->ids, fs->has_ids);
				fs->has_ids = true;
				if (fs->ids == NIL)
					fs->empty = true;
				return;
			}
		default:
			break;
	}

	for (i = 0; i < CRM_NUM_ENUM_FILTERS; i++)
	{
		const char *value;

		if (crm_enum_filters[i].field != field)
			continue;
		value = TextDatumGetCString(v->value);
		if (fs->enum_value[i] != NULL && strcmp(fs->enum_value[i], value) != 0)
			fs->empty = true;
		fs->enum_value[i] = value;
		if (!crm_in_vocabulary(value, crm_enum_filters[i].vocabulary))
			fs->enum_unpushable[i] = true;
	}
}

static void
crm_append_param(StringInfo buf, const char *name, const char *value)
{
	appendStringInfoChar(buf, strchr(buf->data, '?') ? '&' : '?');
	appendStringInfoString(buf, name);
	appendStringInfoChar(buf, '=');
	crmAppendUrlEncoded(buf, value);
}

/* A date as the API writes it; false for years it cannot take. */
static bool
crm_format_date(DateADT d, char *out)
{
	int			year,
				month,
				day;

	j2date(d + POSTGRES_EPOCH_JDATE, &year, &month, &day);
	if (year < 1 || year > 9999)
		return false;
	snprintf(out, 16, "%04d-%02d-%02d", year, month, day);
	return true;
}

static void
crm_append_date(StringInfo buf, const char *name, DateADT d)
{
	char		s[16];

	if (crm_format_date(d, s))
		crm_append_param(buf, name, s);
}

/* A datetime parameter as the API takes it: UTC, whole seconds. */
void
crmAppendTimestampParam(StringInfo buf, const char *name, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		s[32];

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
		return;
	snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02dZ",
			 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	crm_append_param(buf, name, s);
}

static CrmRequest *
crm_make_request(const char *path, bool paged, bool allow_404)
{
	CrmRequest *r = palloc(sizeof(CrmRequest));

	r->path = pstrdup(path);
	r->paged = paged;
	r->allow_404 = allow_404;
	return r;
}

/* The enum filters' parameters: one value each (crm_op_allowed) or none. */
static void
crm_append_enum_params(StringInfo buf, CrmFilterSet *fs)
{
	int			i;

	for (i = 0; i < CRM_NUM_ENUM_FILTERS; i++)
		if (fs->enum_value[i] != NULL && !fs->enum_unpushable[i])
			crm_append_param(buf, crm_enum_filters[i].param, fs->enum_value[i]);
}

/* The query parameter(s) a condition becomes, for EXPLAIN templates. */
static const char *
crm_param_label(CrmField field, CrmOp op)
{
	switch (field)
	{
		case CRM_FIELD_DATE:
			return op == CRM_OP_EQ ? "start_date,end_date" :
				(op == CRM_OP_GT || op == CRM_OP_GE) ? "start_date" : "end_date";
		case CRM_FIELD_PERIOD_START:
			return "start_date";
		case CRM_FIELD_PERIOD_END:
			return "end_date";
		case CRM_FIELD_STATUS:
			return "status";
		case CRM_FIELD_LOCATION:
			return "location";
		case CRM_FIELD_ENQUIRY_TYPE:
			return "enquiry_type";
		case CRM_FIELD_CREATED:
			return "created_after";
		case CRM_FIELD_UPDATED:
			return "updated_after";
		case CRM_FIELD_ID:
			return "id";
		case CRM_FIELD_NONE:
			break;
	}
	return "?";
}

/*
 * The requests a scan makes: specs (from the plan) with values evaluated.
 * When some value is not known yet (plain EXPLAIN of a parameterized or
 * stable expression), one template request shows where each value goes.
 */
List *
crmBuildRequests(CrmResource resource, int minutes, int per_page,
				 List *specs, CrmPushValue *values)
{
	CrmFilterSet fs;
	StringInfoData base;
	char		per_page_value[16];
	ListCell   *lc;
	int			i = 0;
	bool		all_known = true;

	if (resource == CRM_RESOURCE_RECENT)
	{
		char		path[64];

		snprintf(path, sizeof(path), "/appointments/recent?minutes=%d", minutes);
		return list_make1(crm_make_request(path, false, false));
	}

	foreach(lc, specs)
		if (!values[i++].known)
			all_known = false;

	initStringInfo(&base);
	appendStringInfoString(&base, resource == CRM_RESOURCE_STATS ? "/appointments/stats" :
						   resource == CRM_RESOURCE_EXPORT ? "/appointments/export" :
						   "/appointments");
	snprintf(per_page_value, sizeof(per_page_value), "%d", per_page);

	if (!all_known)
	{
		bool		by_id = false;

		i = 0;
		foreach(lc, specs)
		{
			CrmField	field;
			CrmOp		op;
			CrmPushValue *v = &values[i++];

			crmSpecFromNode(lfirst(lc), &field, &op);
			if (field == CRM_FIELD_ID)
			{
				by_id = true;
				resetStringInfo(&base);
				appendStringInfo(&base, "/appointments/%s%s",
								 op == CRM_OP_IN ? "{each of " : "{",
								 v->known ? "const" : v->display);
				appendStringInfoChar(&base, '}');
				break;
			}
		}
		if (!by_id)
		{
			i = 0;
			foreach(lc, specs)
			{
				CrmField	field;
				CrmOp		op;
				CrmPushValue *v = &values[i++];

				crmSpecFromNode(lfirst(lc), &field, &op);
				appendStringInfo(&base, "%c%s={%s}",
								 strchr(base.data, '?') ? '&' : '?',
								 crm_param_label(field, op),
								 v->known ? "const" : v->display);
			}
			if (resource == CRM_RESOURCE_APPOINTMENTS)
				crm_append_param(&base, "per_page", per_page_value);
		}
		return list_make1(crm_make_request(base.data, !by_id && resource == CRM_RESOURCE_APPOINTMENTS,
										   by_id));
	}

	memset(&fs, 0, sizeof(fs));
	i = 0;
	foreach(lc, specs)
	{
		CrmField	field;
		CrmOp		op;

		crmSpecFromNode(lfirst(lc), &field, &op);
		crm_fold_condition(&fs, field, op, &values[i++]);
		if (fs.empty)
			return NIL;
	}
	if (fs.has_lo && fs.has_hi && fs.lo > fs.hi)
		return NIL;

	if (fs.has_ids)
	{
		List	   *requests = NIL;

		foreach(lc, fs.ids)
		{
			char		path[64];

			snprintf(path, sizeof(path), "/appointments/" INT64_FORMAT,
					 *(int64 *) lfirst(lc));
			requests = lappend(requests, crm_make_request(path, false, true));
		}
		return requests;
	}

	if (fs.has_lo)
		crm_append_date(&base, "start_date", fs.lo);
	if (fs.has_hi)
		crm_append_date(&base, "end_date", fs.hi);
	if (resource == CRM_RESOURCE_STATS)
		return list_make1(crm_make_request(base.data, false, false));
	if (fs.has_created)
		crmAppendTimestampParam(&base, "created_after", fs.created_after);
	if (fs.has_updated)
		crmAppendTimestampParam(&base, "updated_after", fs.updated_after);
	crm_append_enum_params(&base, &fs);
	if (resource == CRM_RESOURCE_APPOINTMENTS)
		crm_append_param(&base, "per_page", per_page_value);
	return list_make1(crm_make_request(base.data, resource == CRM_RESOURCE_APPOINTMENTS, false));
}
