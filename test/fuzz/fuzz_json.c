/*-------------------------------------------------------------------------
 *
 * fuzz_json.c
 *		  libFuzzer harness: a response body through crmJsonParse, the
 *		  envelope of every resource through crmParsePage, and each row
 *		  through crmJsonObjectToRow and crmJsonToDatum over the column set
 *		  of columns.c.
 *
 * Each input runs twice: in a UTF-8 database, then in a LATIN1 or
 * SQL_ASCII one (chosen by the input), where strings are converted or
 * checked and error messages rendered differently.  Besides the sanitizers
 * and the shim's checks of every error, it checks what the conversion
 * promises: a text column holds exactly the JSON string, or JSON text that
 * reads back as the same value; json and jsonb get valid JSON.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_shim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"

/* Rows converted per response: more only repeats the same paths. */
#define MAX_ROWS 64

static const char *const path = "/appointments?per_page=100&page=1";

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	shim_init_columns();
	return 0;
}

/* Two JSON values equal as JSON: numbers by value, strings by bytes. */
static bool
json_equiv(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
	{
		if (json_is_integer(a) && json_is_integer(b))
			return json_integer_value(a) == json_integer_value(b);
		return json_number_value(a) == json_number_value(b);
	}
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a))
	{
		case JSON_STRING:
			return json_string_length(a) == json_string_length(b) &&
				memcmp(json_string_value(a), json_string_value(b),
					   json_string_length(a)) == 0;
		case JSON_OBJECT:
			{
				const char *key;
				json_t	   *m;

				if (json_object_size(a) != json_object_size(b))
					return false;
				json_object_foreach(a, key, m)
				{
					json_t	   *n = json_object_get(b, key);

					if (n == NULL || !json_equiv(m, n))
						return false;
				}
				return true;
			}
		case JSON_ARRAY:
			{
				size_t		i;

				if (json_array_size(a) != json_array_size(b))
					return false;
				for (i = 0; i < json_array_size(a); i++)
				{
					if (!json_equiv(json_array_get(a, i), json_array_get(b, i)))
						return false;
				}
				return true;
			}
		default:
			return true;
	}
}

/* The text of a varlena datum, with its length. */
static const char *
datum_text(Datum d, int *len)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	*len = VARSIZE(v) - VARHDRSZ;
	return VARDATA(v);
}

/*
 * In a UTF-8 database: what a text, json or jsonb column holds is the JSON
 * value itself.
 */
static void
check_value_oracle(CrmColumn *col, json_t *value, Datum d, bool isnull)
{
	Oid			base = getBaseType(col->typid);
	const char *s;
	int			len;

	if (value == NULL || json_is_null(value))
	{
		if (!isnull)
			shim_fail("column %s: absent or null JSON gave a non-null value",
					  col->attname);
		return;
	}
	if (isnull)
		shim_fail("column %s: a JSON %d gave SQL NULL", col->attname,
				  (int) json_typeof(value));
	if (GetDatabaseEncoding() != PG_UTF8)
		return;

	if (base == JSONOID || base == JSONBOID ||
		(base == TEXTOID && (json_is_object(value) || json_is_array(value))))
	{
		json_error_t err;
		json_t	   *back;
		bool		same;

		s = datum_text(d, &len);
		back = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
		if (back == NULL)
			shim_fail("column %s: JSON text does not parse back: %s (%.*s)",
					  col->attname, err.text, Min(len, 200), s);
		same = json_equiv(value, back);
		json_decref(back);
		if (!same)
			shim_fail("column %s: JSON text reads back as another value: %.*s",
					  col->attname, Min(len, 200), s);
	}
	else if (base == TEXTOID && json_is_string(value))
	{
		s = datum_text(d, &len);
		if ((size_t) len != json_string_length(value) ||
			memcmp(s, json_string_value(value), len) != 0)
			shim_fail("column %s: text differs from the JSON string", col->attname);
	}
	else if (col->typid == INT8OID && json_is_integer(value))
	{
		if (DatumGetInt64(d) != json_integer_value(value))
			shim_fail("column %s: bigint differs from the JSON integer", col->attname);
	}
	else if (col->typid == FLOAT8OID && json_is_number(value))
	{
		if (DatumGetFloat8(d) != json_number_value(value))
			shim_fail("column %s: float8 differs from the JSON number", col->attname);
	}
	else if (col->typid == BOOLOID && json_is_boolean(value))
	{
		if (DatumGetBool(d) != json_is_true(value))
			shim_fail("column %s: boolean differs from the JSON boolean", col->attname);
	}
}

/*
 * An error of a conversion.  json_in/jsonb_in refusing the JSON text that
 * json_datum.c wrote from a parsed document would be its bug.
 */
static void
check_conversion_error(void)
{
	if (shim_error.message &&
		strncmp(shim_error.message, "invalid input syntax for type json", 34) == 0)
		shim_fail("json_datum.c wrote JSON text that is not valid JSON");
	if (shim_error.context == NULL && shim_error.filename &&
		strstr(shim_error.filename, "json_datum.c") == NULL)
		shim_fail("a conversion error without its column context: %s",
				  shim_error.message);
}

static void
convert_rows(json_t *rows)
{
	size_t		nrows = json_array_size(rows);
	size_t		r;
	Datum	   *values = palloc(sizeof(Datum) * shim_ncolumns);
	bool	   *nulls = palloc(sizeof(bool) * shim_ncolumns);

	for (r = 0; r < nrows && r < MAX_ROWS; r++)
	{
		json_t	   *obj = json_array_get(rows, r);
		volatile bool row_ok = false;
		/* an id for error contexts, sometimes unknown (-1) */
		int64		row_id = (r % 2) ? (int64) r : -1;
		int			i;

		SHIM_TRY(crmJsonObjectToRow(obj, shim_columns, shim_ncolumns, values, nulls);
				 row_ok = true,
				 check_conversion_error());
		if (row_ok)
		{
			for (i = 0; i < shim_ncolumns; i++)
			{
				shim_check_datum(&shim_columns[i], values[i], nulls[i]);
				check_value_oracle(&shim_columns[i],
								   crmJsonLookup(obj, &shim_columns[i]),
								   values[i], nulls[i]);
			}
			if (r > 0)
				continue;
		}

		/* column by column: every column of a row that failed, and row 0 */
		for (i = 0; i < shim_ncolumns; i++)
		{
			CrmColumn  *col = &shim_columns[i];
			json_t	   *value = json_is_object(obj) ? crmJsonLookup(obj, col) : NULL;
			volatile Datum d = 0;
			volatile bool isnull = true;
			volatile bool ok = false;

			SHIM_TRY(d = crmJsonToDatum(value, col, row_id, (bool *) &isnull); ok = true,
					 check_conversion_error());
			if (ok)
			{
				shim_check_datum(col, d, isnull);
				check_value_oracle(col, value, d, isnull);
			}
		}
	}
}

static void
check_page(CrmResource resource, json_t *root, CrmPage *page)
{
	size_t		i;
	json_t	   *elem;

	if (page->rows == NULL || !json_is_array(page->rows))
		shim_fail("crmParsePage left no rows array");
	if (page->total < 0 || page->current_page < 0 || page->last_page < 0)
		shim_fail("crmParsePage returned a negative pagination field");
	if (!page->has_pagination &&
		(page->total != 0 || page->current_page != 0 || page->last_page != 0))
		shim_fail("crmParsePage set pagination fields without pagination");
	if (resource == CRM_RESOURCE_STATS &&
		(json_array_size(page->rows) != 1 || json_array_get(page->rows, 0) != root))
		shim_fail("stats: the row is not the document");
	if (resource != CRM_RESOURCE_STATS)
	{
		json_array_foreach(page->rows, i, elem)
		{
			if (!json_is_object(elem))
				shim_fail("crmParsePage accepted a row that is not an object");
		}
	}
}

static void
run_once(const uint8_t *data, size_t size, int encoding, bool interrupts)
{
	json_t	   *volatile root = NULL;
	static const CrmResource resources[] = {
		CRM_RESOURCE_APPOINTMENTS, CRM_RESOURCE_RECENT,
		CRM_RESOURCE_STATS, CRM_RESOURCE_EXPORT
	};
	int			k;

	shim_begin_input(encoding, interrupts);
	SHIM_TRY(root = crmJsonParse((const char *) data, size, path), root = NULL);
	if (root != NULL)
	{
		for (k = 0; k < (int) lengthof(resources); k++)
		{
			CrmPage		page;
			volatile bool ok = false;

			SHIM_TRY(crmParsePage(root, resources[k], path, &page); ok = true, (void) 0);
			if (!ok)
				continue;
			if (resources[k] == CRM_RESOURCE_EXPORT)
				shim_fail("crmParsePage accepted the export resource");
			check_page(resources[k], root, &page);
			/* recent reads the same rows as appointments: convert once */
			if (resources[k] != CRM_RESOURCE_RECENT)
				convert_rows(page.rows);
		}
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
