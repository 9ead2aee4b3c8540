/*-------------------------------------------------------------------------
 *
 * json_datum.c
 *		  From the API's answers to PostgreSQL values: parsing JSON responses
 *		  (jansson) and CSV exports, checking the envelope of a response, and
 *		  converting each field to a Datum of its column's type.
 *
 * The conversion runs for every column of every row, so everything that
 * needs the catalogs (type input functions, json_path) is resolved once per
 * scan in crmInitColumn, and the per-value path does no catalog lookups and
 * no copies beyond the one the result needs.  Every conversion error carries
 * a context line naming the column, the foreign table, the appointment id
 * and the offending value; that text is built only when an error happens.
 *
 * In the server, jansson allocates in the current memory context (see
 * crmJsonUseMemoryContexts), so a document goes with the context it was
 * parsed in; elsewhere (the fuzzing harness) with malloc, and a reset
 * callback of that context releases it.  Either way an ERROR (which resets or
 * deletes that context) leaks nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* first after postgres.h: it settles the json_object() name clash */
#include "crm_fdw.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/shortest_dec.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* How many characters of an offending value an error context shows. */
#define CRM_CONTEXT_VALUE_CHARS 60

/* How many bytes of a JSON object or array are serialized for that. */
#define CRM_CONTEXT_JSON_BYTES 512

/* How many characters of the API's own failure message an error shows. */
#define CRM_API_MESSAGE_CHARS 500

/* What the error context callback of a conversion reports. */
typedef struct CrmConvState
{
	CrmColumn  *col;			/* NULL: no conversion under way */
	int64		row_id;			/* appointment id, -1 if unknown */
	json_t	   *value;			/* the JSON value being converted, or NULL */
	const char *text;			/* else the text (CSV) value */
} CrmConvState;

static void crm_json_free_callback(void *arg);
static void crm_json_tie_to_context(json_t *json, MemoryContextCallback *cb);
static json_t *crm_json_wrap(json_t *elem);
static const char *crm_json_type_name(json_t *value);
static void crm_json_append_string(StringInfo buf, const char *str, size_t len,
								   int limit);
static void crm_json_append(StringInfo buf, json_t *value, int limit);
static char *crm_render_value(const char *str, size_t len, int maxchars);
static void crm_conversion_error_callback(void *arg);
static Datum crm_cstring_datum(const char *str, CrmColumn *col);
static Datum crm_string_datum(const char *str, size_t len, CrmColumn *col,
							  bool from_json);
static Datum crm_json_text_datum(json_t *value, CrmColumn *col);
static Datum crm_json_convert(json_t *value, CrmColumn *col);
static bool crm_parse_digits(const char *str, size_t len, int64 *result);
static int64 crm_row_id(json_t *obj);
static int64 crm_pagination_field(json_t *pagination, const char *field,
								  const char *path);
static bool crm_csv_only_newlines(const char *str, size_t len);


/* ---------- columns ---------- */

/*
 * Resolve once per scan what converting a column needs: its type's input
 * function and its json_path, split into keys, so no value pays for it.
 */
void
crmInitColumn(CrmColumn *col, Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	char	   *parts;
	char	   *dot;

	col->attnum = attnum;
	col->attname = pstrdup(NameStr(att->attname));
	col->typid = att->atttypid;
	/* a domain's base type never changes (ALTER DOMAIN cannot change it) */
	col->basetype = getBaseType(col->typid);
	col->domain_extra = NULL;
	col->typmod = att->atttypmod;
	getTypeInputInfo(col->typid, &col->typinput, &col->typioparam);
	fmgr_info_cxt(col->typinput, &col->inflinfo, CurrentMemoryContext);
	col->relname = pstrdup(RelationGetRelationName(rel));
	col->json_path = crmGetColumnJsonPath(RelationGetRelid(rel), attnum,
										  col->attname);

	/* The String nodes point into one private copy of the path. */
	col->path_parts = NIL;
	parts = pstrdup(col->json_path);
	for (;;)
	{
		dot = strchr(parts, '.');
		if (dot != NULL)
			*dot = '\0';
		col->path_parts = lappend(col->path_parts, makeString(parts));
		if (dot == NULL)
			break;
		parts = dot + 1;
	}
}


/* ---------- JSON documents ---------- */

static void *
crm_json_palloc(size_t size)
{
	/* NULL, not an ERROR, on failure: jansson must unwind on its own */
	return palloc_extended(size, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
crm_json_pfree(void *ptr)
{
	if (ptr != NULL)
		pfree(ptr);
}

/*
 * Make jansson allocate with palloc in the current memory context: a page's
 * document is some thousand small allocations, which malloc and free made a
 * sixth of the parsing time.  Every document lives and dies within one
 * context (crmJsonParse ties it to the context it was parsed in, and values
 * made from it are made there too), so no chunk outlives its context.
 */
static bool crm_json_in_contexts = false;

void
crmJsonUseMemoryContexts(void)
{
	json_set_alloc_funcs(crm_json_palloc, crm_json_pfree);
	crm_json_in_contexts = true;
}

/* Memory context reset callback: release a jansson value. */
static void
crm_json_free_callback(void *arg)
{
	json_decref((json_t *) arg);
}

/*
 * Make a reset of the current memory context release json.  cb is allocated
 * by the caller before json exists, so that no ERROR can come between the
 * creation of json and its registration (which would leak it).  In the
 * server json is in that context already: walking it to pfree every chunk
 * just before the reset frees them all would be work for nothing.
 */
static void
crm_json_tie_to_context(json_t *json, MemoryContextCallback *cb)
{
	if (crm_json_in_contexts)
		return;
	cb->func = crm_json_free_callback;
	cb->arg = json;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
}

/*
 * A new one-element array holding elem, freed with the current memory
 * context, which must be elem's (or a shorter-lived one): with malloc the
 * array's reference keeps elem alive, with palloc elem's context does.
 */
static json_t *
crm_json_wrap(json_t *elem)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
	json_t	   *array = json_array();

	if (array == NULL || json_array_append(array, elem) != 0)
	{
		json_decref(array);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	crm_json_tie_to_context(array, cb);
	return array;
}

/* The JSON type of a value, as error messages name it. */
static const char *
crm_json_type_name(json_t *value)
{
	if (value == NULL)
		return "nothing";
	switch (json_typeof(value))
	{
		case JSON_OBJECT:
			return "object";
		case JSON_ARRAY:
			return "array";
		case JSON_STRING:
			return "string";
		case JSON_INTEGER:
		case JSON_REAL:
			return "number";
		case JSON_TRUE:
		case JSON_FALSE:
			return "boolean";
		case JSON_NULL:
			return "null";
	}
	return "value";
}

/* Step over a UTF-8 byte order mark, which neither jansson nor jsonb takes. */
void
crmJsonSkipBom(const char **text, size_t *len)
{
	if (*len >= 3 && memcmp(*text, "\xEF\xBB\xBF", 3) == 0)
	{
		*text += 3;
		*len -= 3;
	}
}

/*
 * Parse a JSON text (a response body) into a document that lives until the
 * current memory context is reset.  what names the response in errors.
 *
 * Duplicate keys are rejected (which one would win is not promised);
 * \u0000 in strings is accepted here and refused only if a column actually
 * reads that string.  jansson limits nesting depth itself, and reports a
 * too-deep document as a parse error.
 */
json_t *
crmJsonParse(const char *text, size_t len, const char *what)
{
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
	json_error_t err;
	json_t	   *root;

	crmJsonSkipBom(&text, &len);
	root = json_loadb(text, len,
					  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
					  &err);
	if (root == NULL)
	{
		char	   *p;

		/*
		 * jansson quotes the input near the error; the body may be in any
		 * encoding, so keep only printable ASCII of it.
		 */
		err.text[JSON_ERROR_TEXT_LENGTH - 1] = '\0';
		for (p = err.text; *p != '\0'; p++)
		{
			if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
				*p = '?';
		}
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("invalid JSON in response from %s", what),
				 errdetail_internal("%s at line %d, column %d",
									err.text, err.line, err.column)));
	}
	crm_json_tie_to_context(root, cb);
	return root;
}

/*
 * The value at col's json_path inside obj, or NULL when a key is missing or
 * a step on the way is not an object (both read as SQL NULL).
 */
json_t *
crmJsonLookup(json_t *obj, CrmColumn *col)
{
	json_t	   *cur = obj;
	ListCell   *lc;

	foreach(lc, col->path_parts)
	{
		if (cur == NULL || !json_is_object(cur))
			return NULL;
		cur = json_object_get(cur, strVal(lfirst(lc)));
	}
	return cur;
}


/* ---------- JSON text ---------- */

/*
 * Append str as a JSON string literal, escaping what JSON requires.  limit
 * > 0 as for crm_json_append: only as much of str as can still be shown.
 */
static void
crm_json_append_string(StringInfo buf, const char *str, size_t len, int limit)
{
	size_t		start = 0;
	size_t		i;

	/* each byte of str writes at least one: the rest would be cut anyway */
	if (limit > 0)
		len = Min(len, (size_t) Max(limit - buf->len, 0));

	appendStringInfoChar(buf, '"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) str[i];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(buf, str + start, i - start);
		start = i + 1;
		switch (c)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			default:
				appendStringInfo(buf, "\\u%04x", c);
				break;
		}
	}
	appendBinaryStringInfo(buf, str + start, len - start);
	appendStringInfoChar(buf, '"');
}

/*
 * Append value as compact JSON text (UTF-8).  Ours rather than json_dumps:
 * numbers come out in the shortest form that reads back exactly (jansson
 * prints 99.99 as 99.989999999999995), and nothing is malloc'd that an
 * ERROR could leak.  limit > 0 stops appending once buf holds that many
 * bytes (for error messages, which show only the start).
 */
static void
crm_json_append(StringInfo buf, json_t *value, int limit)
{
	check_stack_depth();

	if (limit > 0 && buf->len >= limit)
		return;

	switch (json_typeof(value))
	{
		case JSON_OBJECT:
			{
				const char *key;
				json_t	   *member;
				bool		first = true;

				appendStringInfoChar(buf, '{');
				json_object_foreach(value, key, member)
				{
					if (limit > 0 && buf->len >= limit)
						break;
					if (!first)
						appendStringInfoChar(buf, ',');
					first = false;
					crm_json_append_string(buf, key, strlen(key), limit);
					appendStringInfoChar(buf, ':');
					crm_json_append(buf, member, limit);
				}
				appendStringInfoChar(buf, '}');
			}
			break;
		case JSON_ARRAY:
			{
				size_t		i;
				json_t	   *elem;

				appendStringInfoChar(buf, '[');
				json_array_foreach(value, i, elem)
				{
					if (limit > 0 && buf->len >= limit)
						break;
					if (i > 0)
						appendStringInfoChar(buf, ',');
					crm_json_append(buf, elem, limit);
				}
				appendStringInfoChar(buf, ']');
			}
			break;
		case JSON_STRING:
			crm_json_append_string(buf, json_string_value(value),
								   json_string_length(value), limit);
			break;
		case JSON_INTEGER:
			appendStringInfo(buf, INT64_FORMAT,
							 (int64) json_integer_value(value));
			break;
		case JSON_REAL:
			{
				char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

				double_to_shortest_decimal_buf(json_real_value(value), num);
				appendStringInfoString(buf, num);
			}
			break;
		case JSON_TRUE:
			appendStringInfoString(buf, "true");
			break;
		case JSON_FALSE:
			appendStringInfoString(buf, "false");
			break;
		case JSON_NULL:
			appendStringInfoString(buf, "null");
			break;
	}
}


/* ---------- error context ---------- */

/*
 * The first maxchars characters of a UTF-8 value, made safe for a message:
 * control characters escaped, bytes that are not valid UTF-8 (CSV bodies are
 * not checked before conversion) and, in a database that is not UTF-8, all
 * non-ASCII characters shown as '?', "..." when cut short.
 */
static char *
crm_render_value(const char *str, size_t len, int maxchars)
{
	StringInfoData buf;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	size_t		i = 0;
	int			nchars = 0;

	initStringInfo(&buf);
	while (i < len && nchars < maxchars)
	{
		unsigned char c = (unsigned char) str[i];

		nchars++;
		if (c < 0x80)
		{
			if (c == '\n')
				appendStringInfoString(&buf, "\\n");
			else if (c == '\r')
				appendStringInfoString(&buf, "\\r");
			else if (c == '\t')
				appendStringInfoString(&buf, "\\t");
			else if (c < 0x20 || c == 0x7f)
				appendStringInfo(&buf, "\\u%04x", c);
			else
				appendStringInfoChar(&buf, (char) c);
			i++;
		}
		else
		{
			int			l = pg_utf_mblen((const unsigned char *) str + i);

			if ((size_t) l <= len - i &&
				pg_utf8_islegal((const unsigned char *) str + i, l))
			{
				if (utf8)
					appendBinaryStringInfo(&buf, str + i, l);
				else
					appendStringInfoChar(&buf, '?');
				i += l;
			}
			else
			{
				appendStringInfoChar(&buf, '?');
				i++;
			}
		}
	}
	if (i < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * Error context callback of a conversion: which column, table, appointment
 * and value.  Runs only when a message is raised, so the value is rendered
 * only then.
 */
static void
crm_conversion_error_callback(void *arg)
{
	CrmConvState *st = (CrmConvState *) arg;
	const char *shown;

	if (st->col == NULL)
		return;

	if (st->value != NULL && json_is_string(st->value))
		shown = crm_render_value(json_string_value(st->value),
								 json_string_length(st->value),
								 CRM_CONTEXT_VALUE_CHARS);
	else if (st->value != NULL)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		crm_json_append(&buf, st->value, CRM_CONTEXT_JSON_BYTES);
		shown = crm_render_value(buf.data, buf.len, CRM_CONTEXT_VALUE_CHARS);
	}
	else if (st->text != NULL)
		shown = crm_render_value(st->text, strlen(st->text),
								 CRM_CONTEXT_VALUE_CHARS);
	else
		shown = "";

	if (st->row_id >= 0)
		errcontext("column \"%s\" of foreign table \"%s\", appointment id %lld, value \"%s\"",
				   st->col->attname, st->col->relname,
				   (long long) st->row_id, shown);
	else
		errcontext("column \"%s\" of foreign table \"%s\", appointment id unknown, value \"%s\"",
				   st->col->attname, st->col->relname, shown);
}


/* ---------- values ---------- */

/*
 * A NUL-terminated string in the server encoding (ASCII that we made) to the
 * column's type: text directly, anything else by its input function.
 */
static Datum
crm_cstring_datum(const char *str, CrmColumn *col)
{
	if (col->typid == TEXTOID)
		return PointerGetDatum(cstring_to_text(str));
	return InputFunctionCall(&col->inflinfo, unconstify(char *, str),
							 col->typioparam, col->typmod);
}

/*
 * Does a datetime string end in an explicit zone: Z, or an offset from +H to
 * +HH:MM:SS (or -)?  Only then is its calendar day ambiguous.  Whether the
 * offset is valid is for timestamptz_in to say.
 */
static bool
crm_has_zone(const char *s, size_t len)
{
	size_t		i;

	if (len <= 10 || (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
		return false;
	if (s[len - 1] == 'Z' || s[len - 1] == 'z')
		return true;
	for (i = len; i > 11; i--)
	{
		char		c = s[i - 1];

		if (c == '+' || c == '-')
			return len - i >= 1 && len - i <= 8;
		if (!isdigit((unsigned char) c) && c != ':')
			return false;
	}
	return false;
}

/*
 * The UTC day of a datetime with a zone: the API writes its datetimes in UTC
 * ("...Z"), so "2024-12-01T10:59:59+11:00" is the period ending 2024-11-30
 * whatever zone the server chose to print it in.
 */
static Datum
crm_zoned_date(const char *s)
{
	TimestampTz ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
															 CStringGetDatum(s),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
	int64		days;

	if (TIMESTAMP_NOT_FINITE(ts))
		return DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(ts));
	days = ts / USECS_PER_DAY;
	if (ts < 0 && ts % USECS_PER_DAY != 0)
		days--;
	return DateADTGetDatum((DateADT) days);
}

/*
 * A UTF-8 string (NUL-terminated at len) to the column's type.  from_json:
 * the string comes from jansson, so it is valid UTF-8 but may hold NUL
 * bytes, which no PostgreSQL string can.  Otherwise (CSV) it is checked to
 * be UTF-8.  In a database that is not UTF-8 it is converted.
 */
static Datum
crm_string_datum(const char *str, size_t len, CrmColumn *col, bool from_json)
{
	const char *s = str;
	Datum		result;

	if (from_json && memchr(str, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("value for column \"%s\" contains a NUL character",
						col->attname),
				 errdetail("\\u0000 cannot be converted to text.")));
	if (len >= MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value for column \"%s\" is too long", col->attname)));

	if (!from_json || GetDatabaseEncoding() != PG_UTF8)
	{
		/* verifies UTF-8, converts if the database is not UTF-8 */
		s = pg_any_to_server(str, (int) len, PG_UTF8);
		if (s != str)
			len = strlen(s);
	}

	if (col->typid == TEXTOID)
		result = PointerGetDatum(cstring_to_text_with_len(s, (int) len));
	else if (col->basetype == DATEOID && crm_has_zone(s, len))
	{
		result = crm_zoned_date(s);
		/* not read by domain_in: check the domain's constraints here */
		if (col->typid != DATEOID)
			domain_check(result, false, col->typid, &col->domain_extra,
						 col->inflinfo.fn_mcxt);
	}
	else
		result = InputFunctionCall(&col->inflinfo, unconstify(char *, s),
								   col->typioparam, col->typmod);
	if (s != str)
		pfree(unconstify(char *, s));
	return result;
}

/*
 * Any JSON value as its compact JSON text, through the column's type (json,
 * jsonb, or text-like).
 */
static Datum
crm_json_text_datum(json_t *value, CrmColumn *col)
{
	StringInfoData buf;
	char	   *s;
	Datum		result;

	initStringInfo(&buf);
	crm_json_append(&buf, value, 0);
	s = buf.data;
	if (GetDatabaseEncoding() != PG_UTF8)
		s = pg_any_to_server(buf.data, buf.len, PG_UTF8);

	if (col->typid == TEXTOID)
		result = PointerGetDatum(cstring_to_text(s));
	else
		result = InputFunctionCall(&col->inflinfo, s, col->typioparam,
								   col->typmod);
	if (s != buf.data)
		pfree(s);
	pfree(buf.data);
	return result;
}

/*
 * Convert one non-null JSON value to the column's type.  The caller has
 * pushed the error context.  The common cases (a string into text or
 * through an input function, a number into an integer) take no detour.
 */
static Datum
crm_json_convert(json_t *value, CrmColumn *col)
{
	Oid			typid = col->typid;

	/* a domain: domain_in checks its constraints, its base type chooses */
	Oid			basetype = col->basetype;

	/*
	 * json and jsonb take the JSON value itself, so a JSON string becomes a
	 * JSON string, not a document parsed from its contents.
	 */
	if (basetype == JSONBOID || basetype == JSONOID)
		return crm_json_text_datum(value, col);

	switch (json_typeof(value))
	{
		case JSON_STRING:
			return crm_string_datum(json_string_value(value),
									json_string_length(value), col, true);

		case JSON_INTEGER:
			{
				int64		v = (int64) json_integer_value(value);
				char		num[MAXINT8LEN + 1];

				switch (typid)
				{
					case INT8OID:
						return Int64GetDatum(v);
					case INT4OID:
						if (v < PG_INT32_MIN || v > PG_INT32_MAX)
							ereport(ERROR,
									(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
									 errmsg("value %lld out of range for type integer",
											(long long) v)));
						return Int32GetDatum((int32) v);
					case INT2OID:
						if (v < PG_INT16_MIN || v > PG_INT16_MAX)
							ereport(ERROR,
									(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
									 errmsg("value %lld out of range for type smallint",
											(long long) v)));
						return Int16GetDatum((int16) v);
					case FLOAT8OID:
						return Float8GetDatum((float8) v);
					default:
						/* boolin would take 1 and 0; a count is no flag */
						if (basetype == BOOLOID)
							ereport(ERROR,
									(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
									 errmsg("cannot convert a JSON number to type boolean"),
									 errhint("Declare the column as a numeric type.")));
						snprintf(num, sizeof(num), INT64_FORMAT, v);
						return crm_cstring_datum(num, col);
				}
			}
			break;

		case JSON_REAL:
			{
				char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

				if (typid == FLOAT8OID)
					return Float8GetDatum(json_real_value(value));
				if (basetype == BOOLOID)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
							 errmsg("cannot convert a JSON number to type boolean"),
							 errhint("Declare the column as a numeric type.")));
				double_to_shortest_decimal_buf(json_real_value(value), num);
				return crm_cstring_datum(num, col);
			}

		case JSON_TRUE:
		case JSON_FALSE:
			if (typid == BOOLOID)
				return BoolGetDatum(json_is_true(value));
			/* text-like types take the word; integer and such refuse it */
			return crm_cstring_datum(json_is_true(value) ? "true" : "false",
									 col);

		case JSON_OBJECT:
		case JSON_ARRAY:
			/* text-like types take the compact JSON text */
			if (basetype == TEXTOID || basetype == VARCHAROID ||
				basetype == BPCHAROID)
				return crm_json_text_datum(value, col);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("cannot convert a JSON %s to type %s",
							crm_json_type_name(value),
							format_type_be(typid)),
					 errhint("Declare the column as jsonb, json or text, or point its json_path at a field inside.")));
			break;

		case JSON_NULL:
			/* callers handle null before getting here */
			break;
	}

	elog(ERROR, "unexpected JSON value of type %d", (int) json_typeof(value));
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * Convert one JSON value to a Datum of the column's type; JSON null and an
 * absent value (NULL) are SQL NULL.  row_id (-1 if unknown) is for errors.
 */
Datum
crmJsonToDatum(json_t *value, CrmColumn *col, int64 row_id, bool *isnull)
{
	CrmConvState st;
	ErrorContextCallback errcb;
	Datum		result;

	if (value == NULL || json_is_null(value))
	{
		*isnull = true;
		return (Datum) 0;
	}

	st.col = col;
	st.row_id = row_id;
	st.value = value;
	st.text = NULL;
	errcb.callback = crm_conversion_error_callback;
	errcb.arg = &st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	result = crm_json_convert(value, col);

	error_context_stack = errcb.previous;
	*isnull = false;
	return result;
}

/*
 * Parse str[0..len) as an optionally signed decimal integer of at most 18
 * digits (so it cannot overflow); false if it is anything else.
 */
static bool
crm_parse_digits(const char *str, size_t len, int64 *result)
{
	size_t		i = 0;
	bool		neg = false;
	int64		v = 0;

	if (len > 0 && (str[0] == '-' || str[0] == '+'))
	{
		neg = (str[0] == '-');
		i++;
	}
	if (i == len || len - i > 18)
		return false;
	for (; i < len; i++)
	{
		if (str[i] < '0' || str[i] > '9')
			return false;
		v = v * 10 + (str[i] - '0');
	}
	*result = neg ? -v : v;
	return true;
}

/* The appointment id in a CSV field, for error messages; -1 if not a number. */
int64
crmRowIdFromText(const char *text)
{
	int64		v;

	if (text != NULL && crm_parse_digits(text, strlen(text), &v) && v >= 0)
		return v;
	return -1;
}

/* The appointment id of a row for error messages, -1 if it has none. */
static int64
crm_row_id(json_t *obj)
{
	json_t	   *id = json_object_get(obj, "id");
	int64		v;

	if (id == NULL)
		return -1;
	if (json_is_integer(id))
		return (int64) json_integer_value(id);
	if (json_is_string(id) &&
		crm_parse_digits(json_string_value(id), json_string_length(id), &v) &&
		v >= 0)
		return v;
	return -1;
}

/*
 * The key of a row (an object) by which a paged scan knows it again.
 * crmSkimPage gives the same from the text.
 */
void
crmJsonRowKey(json_t *obj, CrmRowKey *key)
{
	json_t	   *id = json_object_get(obj, "id");
	json_t	   *updated = json_object_get(obj, "updated_at");

	key->has_id = json_is_integer(id);
	key->id = key->has_id ? (int64) json_integer_value(id) : 0;
	key->version = json_is_string(updated) ?
		hash_bytes((const unsigned char *) json_string_value(updated),
				   (int) json_string_length(updated)) : 0;
}

/*
 * Fill values[i] and nulls[i] for each cols[i] from one JSON object (an
 * appointment, or the stats document); the caller places them in the tuple
 * by attnum.  One error context callback serves the whole row.
 */
void
crmJsonObjectToRow(json_t *obj, CrmColumn *cols, int ncols,
				   Datum *values, bool *nulls)
{
	CrmConvState st;
	ErrorContextCallback errcb;
	int			i;

	if (obj == NULL || !json_is_object(obj))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("row of foreign table \"%s\" is a JSON %s, not an object",
						ncols > 0 ? cols[0].relname : "?",
						crm_json_type_name(obj))));

	st.col = NULL;
	st.row_id = crm_row_id(obj);
	st.value = NULL;
	st.text = NULL;
	errcb.callback = crm_conversion_error_callback;
	errcb.arg = &st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (i = 0; i < ncols; i++)
	{
		CrmColumn  *col = &cols[i];
		json_t	   *value = crmJsonLookup(obj, col);

		if (value == NULL || json_is_null(value))
		{
			values[i] = (Datum) 0;
			nulls[i] = true;
			continue;
		}
		st.col = col;
		st.value = value;
		values[i] = crm_json_convert(value, col);
		nulls[i] = false;
	}

	error_context_stack = errcb.previous;
}


/* ---------- response envelopes ---------- */

/*
 * One of total, current_page, last_page: an integer, also when sent as a
 * numeric string or an integral real; never negative.
 */
static int64
crm_pagination_field(json_t *pagination, const char *field, const char *path)
{
	json_t	   *v = json_object_get(pagination, field);
	int64		result;

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("unexpected response from GET %s", path),
				 errdetail("\"pagination\" has no \"%s\" field.", field)));

	if (json_is_integer(v))
		result = (int64) json_integer_value(v);
	else if (json_is_real(v) &&
			 json_real_value(v) >= 0 && json_real_value(v) < 1e18 &&
			 (double) (int64) json_real_value(v) == json_real_value(v))
		result = (int64) json_real_value(v);
	else if (!json_is_string(v) ||
			 !crm_parse_digits(json_string_value(v), json_string_length(v),
							   &result))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("unexpected response from GET %s", path),
				 errdetail("\"pagination.%s\" is a JSON %s, not an integer.",
						   field, crm_json_type_name(v))));

	if (result < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("unexpected response from GET %s", path),
				 errdetail("\"pagination.%s\" is negative: %lld.",
						   field, (long long) result)));
	return result;
}

/*
 * Check the envelope of a JSON response and find its rows.  Only what the
 * scan relies on is checked; unknown extra fields are ignored.
 */
void
crmParsePage(json_t *root, CrmResource resource, const char *path,
			 CrmPage *page)
{
	json_t	   *success;
	json_t	   *data;
	json_t	   *pagination;

	memset(page, 0, sizeof(CrmPage));

	if (root == NULL || !json_is_object(root))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("unexpected response from GET %s", path),
				 errdetail("The response is a JSON %s, not an object.",
						   crm_json_type_name(root))));

	success = json_object_get(root, "success");
	if (success != NULL && json_is_false(success))
	{
		json_t	   *message = json_object_get(root, "message");

		if (message != NULL && json_is_string(message))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_REPLY_HANDLE),
					 errmsg("unexpected response from GET %s", path),
					 errdetail_internal("The API reported failure: %s",
										crm_render_value(json_string_value(message),
														 json_string_length(message),
														 CRM_API_MESSAGE_CHARS))));
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("unexpected response from GET %s", path),
				 errdetail("The API reported failure without a message.")));
	}

	switch (resource)
	{
		case CRM_RESOURCE_APPOINTMENTS:
		case CRM_RESOURCE_RECENT:
			data = json_object_get(root, "data");
			if (data == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_REPLY_HANDLE),
						 errmsg("unexpected response from GET %s", path),
						 errdetail("The response has no \"data\" field.")));
			if (json_is_array(data))
				page->rows = data;
			else if (json_is_object(data) &&
					 resource == CRM_RESOURCE_APPOINTMENTS)
				page->rows = crm_json_wrap(data);	/* GET /appointments/{id} */
			else
				ereport(ERROR,
						(errcode(ERRCODE_FDW_REPLY_HANDLE),
						 errmsg("unexpected response from GET %s", path),
						 errdetail("\"data\" is a JSON %s, not an array.",
								   crm_json_type_name(data))));

			/* Every row must be an object; say which one is not. */
			{
				size_t		i;
				json_t	   *elem;

				json_array_foreach(page->rows, i, elem)
				{
					if (!json_is_object(elem))
						ereport(ERROR,
								(errcode(ERRCODE_FDW_REPLY_HANDLE),
								 errmsg("unexpected response from GET %s", path),
								 errdetail("Element %zu of \"data\" is a JSON %s, not an object.",
										   i, crm_json_type_name(elem))));
				}
			}

			page->nrows = json_array_size(page->rows);
			pagination = json_object_get(root, "pagination");
			if (pagination != NULL && !json_is_null(pagination))
			{
				if (!json_is_object(pagination))
					ereport(ERROR,
							(errcode(ERRCODE_FDW_REPLY_HANDLE),
							 errmsg("unexpected response from GET %s", path),
							 errdetail("\"pagination\" is a JSON %s, not an object.",
									   crm_json_type_name(pagination))));
				page->total = crm_pagination_field(pagination, "total", path);
				page->current_page = crm_pagination_field(pagination,
														  "current_page", path);
				page->last_page = crm_pagination_field(pagination,
													   "last_page", path);
				page->has_pagination = true;
			}
			break;

		case CRM_RESOURCE_STATS:
			/* one row; columns reach "stats.pending" etc. by json_path */
			page->rows = crm_json_wrap(root);
			page->nrows = 1;
			break;

		case CRM_RESOURCE_EXPORT:
			elog(ERROR, "the export resource answers CSV, not JSON");
			break;
	}
}


/* ---------- CSV ---------- */

/* Whether str[0..len) is nothing but line ends (or empty). */
static bool
crm_csv_only_newlines(const char *str, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		if (str[i] != '\n' && str[i] != '\r')
			return false;
	}
	return true;
}

/*
 * Parse a whole CSV body (RFC 4180) into its header and rows.
 *
 * Fields are unquoted in place in one copy of the body, so the whole result
 * is two allocations plus one pointer array per row.  An unquoted empty
 * field is NULL (how the export writes a null), a quoted "" is an empty
 * string.  Records are numbered from 1 for the header; line numbers count
 * the line ends inside quoted fields too.
 */
CrmCsv *
crmCsvParse(const char *body, size_t len)
{
	CrmCsv	   *csv;
	char	   *buf;
	size_t		r = 0;			/* read position in buf */
	size_t		w = 0;			/* write position, never past r */
	int			line = 1;
	int			recno = 0;
	int			header_alloc = 32;
	char	  **header;

	if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
	{
		body += 3;
		len -= 3;
	}
	if (len == 0 || crm_csv_only_newlines(body, len))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("invalid CSV in export response"),
				 errdetail("The response is empty; a header row was expected.")));
	if (memchr(body, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_REPLY_HANDLE),
				 errmsg("invalid CSV in export response"),
				 errdetail("The response contains a NUL byte.")));

	csv = palloc0(sizeof(CrmCsv));
	buf = MemoryContextAllocHuge(CurrentMemoryContext, len + 1);
	memcpy(buf, body, len);
	buf[len] = '\0';
	header = palloc(header_alloc * sizeof(char *));

	while (r < len)
	{
		int			start_line = line;
		char	  **fields;
		int			capacity;
		int			nf = 0;
		bool		end_of_record = false;

		/* Blank lines at the very end are not records. */
		if (recno > 0 && crm_csv_only_newlines(buf + r, len - r))
			break;
		recno++;
		if ((recno & 1023) == 0)
			CHECK_FOR_INTERRUPTS();

		if (recno == 1)
		{
			fields = header;
			capacity = header_alloc;
		}
		else
		{
			fields = palloc(csv->nfields * sizeof(char *));
			capacity = csv->nfields;
		}

		while (!end_of_record)
		{
			char	   *field = buf + w;
			bool		quoted = false;

			if (r < len && buf[r] == '"')
			{
				quoted = true;
				r++;
				for (;;)
				{
					if (r >= len)
						ereport(ERROR,
								(errcode(ERRCODE_FDW_REPLY_HANDLE),
								 errmsg("invalid CSV in export response"),
								 errdetail("Record %d, which starts on line %d, has an unterminated quoted field.",
										   recno, start_line)));
					if (buf[r] == '"')
					{
						if (r + 1 < len && buf[r + 1] == '"')
						{
							buf[w++] = '"';
							r += 2;
							continue;
						}
						r++;
						break;
					}
					if (buf[r] == '\n')
						line++;
					buf[w++] = buf[r++];
				}
			}
			else
			{
				while (r < len && buf[r] != ',' && buf[r] != '\n' &&
					   !(buf[r] == '\r' && (r + 1 == len || buf[r + 1] == '\n')))
					buf[w++] = buf[r++];
			}

			/* Consume the delimiter before terminating the field over it. */
			if (r >= len)
				end_of_record = true;
			else if (buf[r] == ',')
				r++;
			else if (buf[r] == '\n')
			{
				r++;
				line++;
				end_of_record = true;
			}
			else if (buf[r] == '\r' && r + 1 < len && buf[r + 1] == '\n')
			{
				r += 2;
				line++;
				end_of_record = true;
			}
			else if (buf[r] == '\r' && r + 1 == len)
			{
				/* a CR alone at the very end: the last line end, cut short */
				r++;
				end_of_record = true;
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_FDW_REPLY_HANDLE),
						 errmsg("invalid CSV in export response"),
						 errdetail("Record %d, which starts on line %d, has a character after the closing quote of field %d.",
								   recno, start_line, nf + 1)));
			buf[w++] = '\0';

			if (nf >= capacity && recno == 1)
			{
				header_alloc *= 2;
				header = repalloc(header, header_alloc * sizeof(char *));
				fields = header;
				capacity = header_alloc;
			}
			if (nf < capacity)
			{
				/* header names are never NULL */
				fields[nf] = (!quoted && *field == '\0' && recno > 1) ?
					NULL : field;
			}
			nf++;
		}

		if (recno == 1)
		{
			csv->header = header;
			csv->nfields = nf;
		}
		else
		{
			if (nf != csv->nfields)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_REPLY_HANDLE),
						 errmsg("invalid CSV in export response"),
						 errdetail_plural("Record %d, which starts on line %d, has %d field; the header has %d.",
										  "Record %d, which starts on line %d, has %d fields; the header has %d.",
										  nf, recno, start_line, nf, csv->nfields)));
			csv->rows = lappend(csv->rows, fields);
		}
	}

	return csv;
}

/*
 * Convert one CSV field (UTF-8 text, NULL for SQL NULL) to the column's type
 * through its input function, with the same error context as JSON values.
 */
Datum
crmTextToDatum(const char *text, CrmColumn *col, int64 row_id, bool *isnull)
{
	CrmConvState st;
	ErrorContextCallback errcb;
	Datum		result;

	if (text == NULL)
	{
		*isnull = true;
		return (Datum) 0;
	}

	st.col = col;
	st.row_id = row_id;
	st.value = NULL;
	st.text = text;
	errcb.callback = crm_conversion_error_callback;
	errcb.arg = &st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	result = crm_string_datum(text, strlen(text), col, false);

	error_context_stack = errcb.previous;
	*isnull = false;
	return result;
}
