/*-------------------------------------------------------------------------
 *
 * import.c
 *		  IMPORT FOREIGN SCHEMA: the API's four resources as foreign tables.
 *
 * The API has no schema to ask for, so the tables come from the contract:
 * every field of an appointment with a fitting type, the nested objects both
 * as jsonb and as flattened columns (json_path), and the stats envelope.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"


/* A column of an imported table: name, type, json_path (NULL: the name). */
typedef struct CrmImportColumn
{
	const char *name;
	const char *type;
	const char *json_path;
} CrmImportColumn;

/* The appointment object of the contract, in its order. */
static const CrmImportColumn crm_appointment_columns[] = {
	{"id", "bigint", NULL},
	{"full_name", "text", NULL},
	{"email", "text", NULL},
	{"phone", "text", NULL},
	{"location", "text", NULL},
	{"meeting_type", "text", NULL},
	{"preferred_language", "text", NULL},
	{"enquiry_type", "text", NULL},
	{"enquiry_type_display", "text", NULL},
	{"service_type", "text", NULL},
	{"specific_service", "text", NULL},
	{"enquiry_details", "text", NULL},
	{"appointment_date", "date", NULL},
	{"appointment_time", "time", NULL},
	{"appointment_datetime", "timestamptz", NULL},
	{"duration_minutes", "integer", NULL},
	{"status", "text", NULL},
	{"status_display", "text", NULL},
	{"is_paid", "boolean", NULL},
	{"amount", "numeric(10,2)", NULL},
	{"discount_amount", "numeric(10,2)", NULL},
	{"final_amount", "numeric(10,2)", NULL},
	{"promo_code", "text", NULL},
	{"assigned_admin", "jsonb", NULL},
	{"assigned_admin_id", "bigint", "assigned_admin.id"},
	{"assigned_admin_name", "text", "assigned_admin.name"},
	{"assigned_admin_email", "text", "assigned_admin.email"},
	{"payment", "jsonb", NULL},
	{"payment_id", "bigint", "payment.id"},
	{"payment_status", "text", "payment.status"},
	{"payment_amount", "numeric(10,2)", "payment.amount"},
	{"payment_method", "text", "payment.payment_method"},
	{"paid_at", "timestamptz", "payment.paid_at"},
	{"admin_notes", "text", NULL},
	{"client_notes", "text", NULL},
	{"confirmed_at", "timestamptz", NULL},
	{"cancelled_at", "timestamptz", NULL},
	{"cancellation_reason", "text", NULL},
	{"created_at", "timestamptz", NULL},
	{"updated_at", "timestamptz", NULL},
	{NULL, NULL, NULL}
};

static const CrmImportColumn crm_stats_columns[] = {
	{"period_start", "date", "period.start_date"},
	{"period_end", "date", "period.end_date"},
	{"total_appointments", "integer", "stats.total_appointments"},
	{"pending", "integer", "stats.pending"},
	{"confirmed", "integer", "stats.confirmed"},
	{"completed", "integer", "stats.completed"},
	{"cancelled", "integer", "stats.cancelled"},
	{"paid_appointments", "integer", "stats.paid_appointments"},
	{"total_revenue", "numeric(12,2)", "stats.total_revenue"},
	{"by_enquiry_type", "jsonb", "stats.by_enquiry_type"},
	{"by_location", "jsonb", "stats.by_location"},
	{NULL, NULL, NULL}
};

typedef struct CrmImportTable
{
	const char *name;
	const char *options;		/* table OPTIONS (...) body */
	const CrmImportColumn *columns;
	bool		flat;			/* CSV: skip the jsonb columns */
} CrmImportTable;

static const CrmImportTable crm_import_tables[] = {
	{"appointments", "resource 'appointments'", crm_appointment_columns, false},
	{"appointments_recent", "resource 'recent', minutes '30'", crm_appointment_columns, false},
	{"appointment_stats", "resource 'stats'", crm_stats_columns, false},
	{"appointments_export", "resource 'export'", crm_appointment_columns, true},
};

/* Is table name selected by the statement's LIMIT TO / EXCEPT list? */
static bool
crm_table_selected(ImportForeignSchemaStmt *stmt, const char *name)
{
	ListCell   *lc;
	bool		listed = false;

	foreach(lc, stmt->table_list)
		if (strcmp(((RangeVar *) lfirst(lc))->relname, name) == 0)
			listed = true;
	switch (stmt->list_type)
	{
		case FDW_IMPORT_SCHEMA_LIMIT_TO:
			return listed;
		case FDW_IMPORT_SCHEMA_EXCEPT:
			return !listed;
		default:
			return true;
	}
}

/*
 * CREATE FOREIGN TABLE commands for the selected tables.  The remote schema
 * name is free: the API has one set of resources.
 */
List *
crmImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	List	   *commands = NIL;
	int			t;

	for (t = 0; t < lengthof(crm_import_tables); t++)
	{
		const CrmImportTable *tab = &crm_import_tables[t];
		const CrmImportColumn *col;
		StringInfoData buf;
		bool		first = true;

		if (!crm_table_selected(stmt, tab->name))
			continue;

		initStringInfo(&buf);
		appendStringInfo(&buf, "CREATE FOREIGN TABLE %s (\n",
						 quote_identifier(tab->name));
		for (col = tab->columns; col->name; col++)
		{
			if (tab->flat && strcmp(col->type, "jsonb") == 0)
				continue;
			appendStringInfo(&buf, "%s  %s %s", first ? "" : ",\n",
							 quote_identifier(col->name), col->type);
			if (col->json_path)
				appendStringInfo(&buf, " OPTIONS (json_path %s)",
								 quote_literal_cstr(col->json_path));
			first = false;
		}
		appendStringInfo(&buf, "\n) SERVER %s OPTIONS (%s)",
						 quote_identifier(server->servername), tab->options);
		commands = lappend(commands, buf.data);
	}
	return commands;
}
