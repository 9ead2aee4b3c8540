/*-------------------------------------------------------------------------
 *
 * fuzz_csv.c
 *		  libFuzzer harness: an export body through crmCsvParse, then every
 *		  field through crmTextToDatum over the column set of columns.c
 *		  (mapped to the header as fdw.c maps them; a column the header
 *		  does not name takes a field by position, so that fuzzed headers
 *		  still reach every type), and crmRowIdFromText on the id.
 *
 * Each input runs twice: in a UTF-8 database, then in a LATIN1 or
 * SQL_ASCII one with a cancel pending (the parser checks for interrupts
 * every 1024 records).  Oracles: the parse is stable (the rows written back
 * as CSV parse to the same rows), and a text column holds exactly its field.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_shim.h"

#include <stdio.h>
#include <stdlib.h>

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"

/* Rows converted per body: more only repeats the same paths. */
#define MAX_ROWS 16

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	shim_init_columns();
	return 0;
}

/* Write one field as CSV: NULL as nothing, anything else quoted. */
static void
write_field(StringInfo buf, const char *field)
{
	const char *p;

	if (field == NULL)
		return;
	appendStringInfoChar(buf, '"');
	for (p = field; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

static bool
same_field(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* The rows written back as CSV must parse to the same header and rows. */
static void
check_round_trip(CrmCsv *csv)
{
	StringInfoData buf;
	CrmCsv	   *volatile again = NULL;
	ListCell   *lc,
			   *lc2;
	int			i;

	/*
	 * With one column, a NULL in the last record is a blank last line, which
	 * the format cannot tell from a trailing line end: not comparable.
	 */
	if (csv->nfields == 1 && csv->rows != NIL &&
		((char **) llast(csv->rows))[0] == NULL)
		return;

	initStringInfo(&buf);
	for (i = 0; i < csv->nfields; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		write_field(&buf, csv->header[i]);
	}
	appendStringInfoString(&buf, "\r\n");
	foreach(lc, csv->rows)
	{
		char	  **fields = (char **) lfirst(lc);

		for (i = 0; i < csv->nfields; i++)
		{
			if (i > 0)
				appendStringInfoChar(&buf, ',');
			write_field(&buf, fields[i]);
		}
		appendStringInfoString(&buf, "\r\n");
	}

	SHIM_TRY(again = crmCsvParse(buf.data, buf.len),
			 shim_fail("the rows written back as CSV do not parse: %s",
					   shim_error.message));
	if (again->nfields != csv->nfields ||
		list_length(again->rows) != list_length(csv->rows))
		shim_fail("round trip: %d fields and %d rows became %d and %d",
				  csv->nfields, list_length(csv->rows),
				  again->nfields, list_length(again->rows));
	for (i = 0; i < csv->nfields; i++)
	{
		if (!same_field(csv->header[i], again->header[i]))
			shim_fail("round trip: header field %d differs", i + 1);
	}
	forboth(lc, csv->rows, lc2, again->rows)
	{
		char	  **a = (char **) lfirst(lc);
		char	  **b = (char **) lfirst(lc2);

		for (i = 0; i < csv->nfields; i++)
		{
			if (!same_field(a[i], b[i]))
				shim_fail("round trip: a field differs");
		}
	}
}

static void
check_csv(CrmCsv *csv)
{
	ListCell   *lc;
	int			i;

	if (csv->nfields < 1 || csv->header == NULL)
		shim_fail("crmCsvParse returned no header");
	for (i = 0; i < csv->nfields; i++)
	{
		if (csv->header[i] == NULL)
			shim_fail("header field %d is NULL", i + 1);
		(void) strlen(csv->header[i]);
	}
	foreach(lc, csv->rows)
	{
		char	  **fields = (char **) lfirst(lc);

		for (i = 0; i < csv->nfields; i++)
		{
			if (fields[i] != NULL)
				(void) strlen(fields[i]);
		}
	}
}

/* fdw.c's crm_map_csv_columns, then a field by position for the rest. */
static void
map_columns(CrmCsv *csv, int *field_of, int *id_field)
{
	int			i,
				j;

	for (i = 0; i < shim_ncolumns; i++)
	{
		char	   *flat = pstrdup(shim_columns[i].json_path);
		char	   *p;

		for (p = flat; *p; p++)
			if (*p == '.')
				*p = '_';
		field_of[i] = -1;
		for (j = 0; j < csv->nfields && field_of[i] < 0; j++)
			if (strcmp(csv->header[j], flat) == 0)
				field_of[i] = j;
		for (j = 0; j < csv->nfields && field_of[i] < 0; j++)
			if (strcmp(csv->header[j], shim_columns[i].attname) == 0)
				field_of[i] = j;
		if (field_of[i] < 0)
			field_of[i] = i % csv->nfields;
		pfree(flat);
	}
	*id_field = -1;
	for (j = 0; j < csv->nfields; j++)
		if (strcmp(csv->header[j], "id") == 0)
			*id_field = j;
}

static void
convert_rows(CrmCsv *csv)
{
	int		   *field_of = palloc(sizeof(int) * shim_ncolumns);
	int			id_field;
	int			nrows = 0;
	ListCell   *lc;

	map_columns(csv, field_of, &id_field);
	foreach(lc, csv->rows)
	{
		char	  **fields = (char **) lfirst(lc);
		int64		row_id = id_field >= 0 ? crmRowIdFromText(fields[id_field]) : -1;
		int			i;

		if (nrows++ >= MAX_ROWS)
			break;
		if (row_id < -1)
			shim_fail("crmRowIdFromText returned %lld", (long long) row_id);
		for (i = 0; i < shim_ncolumns; i++)
		{
			CrmColumn  *col = &shim_columns[i];
			const char *field = fields[field_of[i]];
			volatile Datum d = 0;
			volatile bool isnull = true;
			volatile bool ok = false;

			SHIM_TRY(d = crmTextToDatum(field, col, row_id, (bool *) &isnull); ok = true,
					 if (shim_error.context == NULL)
					 shim_fail("a conversion error without its column context: %s",
							   shim_error.message));
			if (!ok)
				continue;
			if (isnull != (field == NULL))
				shim_fail("column %s: NULL-ness of the field not kept", col->attname);
			shim_check_datum(col, d, isnull);
			if (!isnull && col->typid == TEXTOID && GetDatabaseEncoding() == PG_UTF8)
			{
				struct varlena *v = (struct varlena *) DatumGetPointer(d);

				if (VARSIZE(v) - VARHDRSZ != strlen(field) ||
					memcmp(VARDATA(v), field, strlen(field)) != 0)
					shim_fail("column %s: text differs from its field", col->attname);
			}
		}
	}
}

static void
run_once(const uint8_t *data, size_t size, int encoding, bool interrupts)
{
	CrmCsv	   *volatile csv = NULL;

	shim_begin_input(encoding, interrupts);
	SHIM_TRY(csv = crmCsvParse((const char *) data, size), csv = NULL);
	if (csv != NULL)
	{
		check_csv(csv);
		if (!interrupts)
			check_round_trip(csv);
		convert_rows(csv);
	}
	shim_end_input();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run_once(data, size, PG_UTF8, false);
	run_once(data, size, (size % 2) ? PG_LATIN1 : PG_SQL_ASCII, true);
	return 0;
}
