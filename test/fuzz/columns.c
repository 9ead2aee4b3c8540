/*-------------------------------------------------------------------------
 *
 * columns.c
 *		  The fixed column set of the fuzz harnesses: a fake foreign table
 *		  whose columns cover every type family json_datum.c treats apart,
 *		  built through json_datum.c's own crmInitColumn; and the checks of
 *		  a converted value.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_shim.h"

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/rel.h"

typedef struct ShimColumnSpec
{
	const char *name;
	Oid			typid;
	int32		typmod;
	const char *json_path;
} ShimColumnSpec;

#define NUMERIC_10_2 (((10 << 16) | 2) + VARHDRSZ)

static const ShimColumnSpec shim_specs[] = {
	{"id", INT8OID, -1, "id"},
	{"duration_minutes", INT4OID, -1, "duration_minutes"},
	{"assigned_admin_id", INT2OID, -1, "assigned_admin.id"},
	{"full_name", TEXTOID, -1, "full_name"},
	{"enquiry_type", VARCHAROID, 3 + VARHDRSZ, "enquiry_type"},
	{"appointment_date", DATEOID, -1, "appointment_date"},
	{"appointment_time", TIMEOID, -1, "appointment_time"},
	{"appointment_datetime", TIMESTAMPTZOID, -1, "appointment_datetime"},
	{"final_amount", NUMERICOID, NUMERIC_10_2, "final_amount"},
	{"amount", FLOAT8OID, -1, "amount"},
	{"is_paid", BOOLOID, -1, "is_paid"},
	{"payment", JSONBOID, -1, "payment"},
	{"assigned_admin", JSONOID, -1, "assigned_admin"},
	{"payment_status", TEXTOID, -1, "payment.status"},
	{"paid_day", DATEOID, -1, "payment.paid_at"},	/* a zoned datetime into date */
	{"paid_day_checked", SHIM_DAY_OID, -1, "payment.paid_at"},	/* ... into a domain */
	{"location", BPCHAROID, 9 + VARHDRSZ, "location"},	/* char(9) */
	{"duration_checked", SHIM_POSINT_OID, -1, "duration_minutes"},
	{"paid_flag", SHIM_FLAG_OID, -1, "is_paid"},
	{"created_day", DATEOID, -1, "created_at"},
	{"updated_at", TIMESTAMPTZOID, -1, "updated_at"},
	{"payment_text", TEXTOID, -1, "payment"},	/* an object into text */
	{"status", TEXTOID, -1, "status"},
	{"stats_pending", INT4OID, -1, "stats.pending"},
	{"total_revenue", NUMERICOID, NUMERIC_10_2, "stats.total_revenue"},
	{"by_location", JSONBOID, -1, "stats.by_location"},
	{"period_start", DATEOID, -1, "period.start_date"},
	{"odd_path", TEXTOID, -1, "a..b"},	/* an empty key on the way */
};

#define SHIM_NCOLS lengthof(shim_specs)

CrmColumn  *shim_columns;
int			shim_ncolumns;

/* options.c's crmGetColumnJsonPath: the json_path option of the column. */
char *
crmGetColumnJsonPath(Oid relid, AttrNumber attnum, const char *attname)
{
	if (attnum < 1 || attnum > (AttrNumber) SHIM_NCOLS)
		shim_fail("crmGetColumnJsonPath: attnum %d", attnum);
	return pstrdup(shim_specs[attnum - 1].json_path);
}

void
shim_init_columns(void)
{
	MemoryContext old = MemoryContextSwitchTo(shim_top_context);
	RelationData *rel = palloc0(sizeof(RelationData));
	TupleDesc	desc = palloc0(offsetof(TupleDescData, attrs) +
							   SHIM_NCOLS * sizeof(FormData_pg_attribute));
	Form_pg_class relform = palloc0(sizeof(FormData_pg_class));
	sigjmp_buf	jb;
	int			i;

	desc->natts = SHIM_NCOLS;
	desc->tdtypeid = RECORDOID;
	desc->tdtypmod = -1;
	desc->tdrefcount = -1;
	for (i = 0; i < (int) SHIM_NCOLS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		namestrcpy(&att->attname, shim_specs[i].name);
		att->atttypid = shim_specs[i].typid;
		att->atttypmod = shim_specs[i].typmod;
		att->attnum = i + 1;
	}
	namestrcpy(&relform->relname, "appointments");
	rel->rd_id = 70000;
	rel->rd_rel = relform;
	rel->rd_att = desc;

	shim_ncolumns = SHIM_NCOLS;
	shim_columns = palloc0(sizeof(CrmColumn) * SHIM_NCOLS);
	if (sigsetjmp(jb, 0) != 0)
		shim_fail("crmInitColumn raised an error");
	shim_exception_stack = &jb;
	for (i = 0; i < (int) SHIM_NCOLS; i++)
		crmInitColumn(&shim_columns[i], rel, i + 1);
	shim_exception_stack = NULL;
	MemoryContextSwitchTo(old);
}

/* namestrcpy of the backend (utils/adt/name.c). */
void
namestrcpy(Name name, const char *str)
{
	strncpy(NameStr(*name), str, NAMEDATALEN);
	NameStr(*name)[NAMEDATALEN - 1] = '\0';
}

static int
shim_count_chars(const char *s, int len)
{
	int			n = 0;

	while (len > 0)
	{
		int			l = pg_encoding_mblen(GetDatabaseEncoding(), s);

		s += l;
		len -= l;
		n++;
	}
	return n;
}

void
shim_check_datum(CrmColumn *col, Datum value, bool isnull)
{
	Oid			base = getBaseType(col->typid);

	if (isnull)
		return;
	switch (base)
	{
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case JSONOID:
		case JSONBOID:
		case NUMERICOID:
			{
				struct varlena *v = (struct varlena *) DatumGetPointer(value);
				int			len;
				const char *data;

				if (v == NULL)
					shim_fail("column %s: NULL pointer datum", col->attname);
				if (!VARATT_IS_4B_U(v) || VARSIZE(v) < VARHDRSZ)
					shim_fail("column %s: bad varlena header", col->attname);
				len = VARSIZE(v) - VARHDRSZ;
				data = VARDATA(v);
				if (memchr(data, '\0', len) != NULL)
					shim_fail("column %s: value holds a NUL byte", col->attname);
				if (pg_encoding_verifymbstr(GetDatabaseEncoding(), data, len) != len)
					shim_fail("column %s: value is not valid in the database encoding",
							  col->attname);
				if (base == VARCHAROID && col->typmod >= (int32) VARHDRSZ &&
					shim_count_chars(data, len) > col->typmod - (int32) VARHDRSZ)
					shim_fail("column %s: varchar value longer than its typmod",
							  col->attname);
				if (base == BPCHAROID && col->typmod >= (int32) VARHDRSZ &&
					shim_count_chars(data, len) != col->typmod - (int32) VARHDRSZ)
					shim_fail("column %s: char(n) value of the wrong length",
							  col->attname);
			}
			break;
		case DATEOID:
			{
				DateADT		d = DatumGetDateADT(value);

				if (!DATE_NOT_FINITE(d) && !IS_VALID_DATE(d))
					shim_fail("column %s: date %d out of range", col->attname, d);
				if (col->typid == SHIM_DAY_OID && d < 0)
					shim_fail("column %s: domain check bypassed", col->attname);
			}
			break;
		case TIMESTAMPTZOID:
			{
				TimestampTz ts = DatumGetTimestampTz(value);

				if (!TIMESTAMP_NOT_FINITE(ts) && !IS_VALID_TIMESTAMP(ts))
					shim_fail("column %s: timestamp out of range", col->attname);
			}
			break;
		case TIMEOID:
			{
				TimeADT		t = DatumGetTimeADT(value);

				if (t < 0 || t > USECS_PER_DAY)
					shim_fail("column %s: time out of range", col->attname);
			}
			break;
		case INT4OID:
			if (col->typid == SHIM_POSINT_OID && DatumGetInt32(value) <= 0)
				shim_fail("column %s: domain check bypassed", col->attname);
			break;
		case BOOLOID:
			if (value != 0 && value != 1)
				shim_fail("column %s: boolean datum %lu", col->attname,
						  (unsigned long) value);
			break;
		default:
			break;
	}
}
