/*-------------------------------------------------------------------------
 *
 * options.c
 *		  The options of crm_fdw's servers, user mappings, foreign tables and
 *		  columns: validation (the FDW validator) and lookup with defaults.
 *
 * Every option is checked when it is set, so a scan never meets a bad value;
 * errors name the option and, for unknown names, list the valid ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include <limits.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "catalog/pg_attribute.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"


PG_FUNCTION_INFO_V1(crm_fdw_validator);

/* How an option's value is checked. */
typedef enum CrmOptionKind
{
	CRM_OPT_URL,
	CRM_OPT_INT,
	CRM_OPT_BOOL,
	CRM_OPT_PATH,
	CRM_OPT_TOKEN,
	CRM_OPT_RESOURCE,
	CRM_OPT_JSON_PATH
} CrmOptionKind;

typedef struct CrmOption
{
	const char *name;
	Oid			context;		/* catalog the option belongs to */
	CrmOptionKind kind;
	int64		min;			/* CRM_OPT_INT range */
	int64		max;
} CrmOption;

static const CrmOption crm_options[] = {
	{"url", ForeignServerRelationId, CRM_OPT_URL, 0, 0},
	{"timeout_ms", ForeignServerRelationId, CRM_OPT_INT, 1, 3600000},
	{"connect_timeout_ms", ForeignServerRelationId, CRM_OPT_INT, 1, 600000},
	{"max_retries", ForeignServerRelationId, CRM_OPT_INT, 0, 20},
	{"retry_base_ms", ForeignServerRelationId, CRM_OPT_INT, 0, 600000},
	{"rate_limit_per_minute", ForeignServerRelationId, CRM_OPT_INT, 0, 100000},
	{"page_size", ForeignServerRelationId, CRM_OPT_INT, 1, 100},
	{"max_response_bytes", ForeignServerRelationId, CRM_OPT_INT, 1024, (int64) 1024 * 1024 * 1024},
	{"ssl_verify", ForeignServerRelationId, CRM_OPT_BOOL, 0, 0},
	{"ca_file", ForeignServerRelationId, CRM_OPT_PATH, 0, 0},
	{"token", UserMappingRelationId, CRM_OPT_TOKEN, 0, 0},
	{"resource", ForeignTableRelationId, CRM_OPT_RESOURCE, 0, 0},
	{"minutes", ForeignTableRelationId, CRM_OPT_INT, 1, 1440},
	{"json_path", AttributeRelationId, CRM_OPT_JSON_PATH, 0, 0},
	{NULL, InvalidOid, 0, 0, 0}
};

static const char *const crm_resource_names[] = {
	[CRM_RESOURCE_APPOINTMENTS] = "appointments",
	[CRM_RESOURCE_RECENT] = "recent",
	[CRM_RESOURCE_STATS] = "stats",
	[CRM_RESOURCE_EXPORT] = "export",
};

/* Defaults: the API's documented limits (60 requests a minute, 100 rows a page). */
#define CRM_DEFAULT_TIMEOUT_MS			30000
#define CRM_DEFAULT_CONNECT_TIMEOUT_MS	10000
#define CRM_DEFAULT_MAX_RETRIES			3
#define CRM_DEFAULT_RETRY_BASE_MS		500
#define CRM_DEFAULT_RATE_LIMIT			60
#define CRM_DEFAULT_PAGE_SIZE			100
#define CRM_DEFAULT_MAX_RESPONSE_BYTES	((int64) 64 * 1024 * 1024)
#define CRM_DEFAULT_MINUTES				30

/* Name of the catalog an option context stands for, for messages. */
static const char *
crm_context_name(Oid context)
{
	switch (context)
	{
		case ForeignServerRelationId:
			return "server";
		case UserMappingRelationId:
			return "user mapping";
		case ForeignTableRelationId:
			return "foreign table";
		case AttributeRelationId:
			return "column";
		default:
			return "foreign-data wrapper";
	}
}

static const CrmOption *
crm_find_option(const char *name, Oid context)
{
	const CrmOption *opt;

	for (opt = crm_options; opt->name; opt++)
		if (opt->context == context && strcmp(opt->name, name) == 0)
			return opt;
	return NULL;
}

/* Parse an integer option, or fail naming it and its range. */
static int64
crm_parse_int_option(const CrmOption *opt, const char *value)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(value, &end, 10);
	while (*end == ' ')
		end++;
	if (errno != 0 || end == value || *end != '\0' || v < opt->min || v > opt->max)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
				 errhint("The value must be an integer from " INT64_FORMAT " to " INT64_FORMAT ".",
						 opt->min, opt->max)));
	return (int64) v;
}

/* Only http and https, with a host: anything else could read local files. */
static void
crm_check_url(const char *value)
{
	const char *rest;

	if (pg_strncasecmp(value, "https://", 8) == 0)
		rest = value + 8;
	else if (pg_strncasecmp(value, "http://", 7) == 0)
		rest = value + 7;
	else
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"url\": \"%s\"", value),
				 errdetail("Only http:// and https:// URLs are supported."),
				 errhint("Use the API's base URL, for example https://example.com/api/crm.")));
	if (*rest == '\0' || *rest == '/' || *rest == '?' || *rest == '#')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"url\": \"%s\"", value),
				 errdetail("The URL has no host.")));
	if (strpbrk(value, "?# \t\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"url\": \"%s\"", value),
				 errdetail("The base URL must not contain a query string, a fragment or white space.")));
}

/* Check one option's value; the token's value is never echoed. */
static void
crm_check_option_value(const CrmOption *opt, DefElem *def)
{
	const char *value = defGetString(def);

	switch (opt->kind)
	{
		case CRM_OPT_URL:
			crm_check_url(value);
			break;
		case CRM_OPT_INT:
			(void) crm_parse_int_option(opt, value);
			break;
		case CRM_OPT_BOOL:
			(void) defGetBoolean(def);
			break;
		case CRM_OPT_PATH:
			if (!is_absolute_path(value))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
						 errhint("Give an absolute path.")));
			break;
		case CRM_OPT_TOKEN:
			if (value[0] == '\0' || strpbrk(value, "\r\n") != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"token\""),
						 errdetail("The token must be non-empty and must not contain line breaks.")));
			break;
		case CRM_OPT_RESOURCE:
			{
				int			i;

				for (i = 0; i < lengthof(crm_resource_names); i++)
					if (strcmp(value, crm_resource_names[i]) == 0)
						return;
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"resource\": \"%s\"", value),
						 errhint("Valid values are appointments, recent, stats and export.")));
			}
			break;
		case CRM_OPT_JSON_PATH:
			if (value[0] == '\0' || value[0] == '.' ||
				value[strlen(value) - 1] == '.' || strstr(value, "..") != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"json_path\": \"%s\"", value),
						 errhint("Give field names separated by dots, for example payment.status.")));
			break;
	}
}

/*
 * The FDW validator: called for CREATE/ALTER of every object that has options.
 */
Datum
crm_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;
	bool		has_url = false;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const CrmOption *opt = crm_find_option(def->defname, catalog);

		if (opt == NULL)
		{
			StringInfoData buf;
			const CrmOption *o;

			initStringInfo(&buf);
			for (o = crm_options; o->name; o++)
				if (o->context == catalog)
					appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", o->name);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for a crm_fdw %s", def->defname,
							crm_context_name(catalog)),
					 buf.len > 0
					 ? errhint("Valid options in this context are: %s.", buf.data)
					 : errhint("There are no valid options in this context.")));
		}
		crm_check_option_value(opt, def);
		if (opt->kind == CRM_OPT_URL)
			has_url = true;
	}

	if (catalog == ForeignServerRelationId && !has_url)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a crm_fdw server needs the option \"url\""),
				 errhint("Give the API's base URL, for example OPTIONS (url 'https://example.com/api/crm').")));

	PG_RETURN_VOID();
}

/* The integer value of option name in options, or dflt. */
static int64
crm_int_option(List *options, const char *name, Oid context, int64 dflt)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return crm_parse_int_option(crm_find_option(name, context), defGetString(def));
	}
	return dflt;
}

/*
 * Fill opts from a server's options, defaults where unset.
 */
void
crmGetServerOptions(ForeignServer *server, CrmServerOptions *opts)
{
	ListCell   *lc;
	List	   *o = server->options;
	Oid			ctx = ForeignServerRelationId;
	size_t		len;

	opts->url = NULL;
	opts->ssl_verify = true;
	opts->ca_file = NULL;
	foreach(lc, o)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "url") == 0)
			opts->url = pstrdup(defGetString(def));
		else if (strcmp(def->defname, "ssl_verify") == 0)
			opts->ssl_verify = defGetBoolean(def);
		else if (strcmp(def->defname, "ca_file") == 0)
			opts->ca_file = pstrdup(defGetString(def));
	}
	if (opts->url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no option \"url\"", server->servername)));
	/* Requests append "/appointments...": keep the base without a trailing slash. */
	len = strlen(opts->url);
	while (len > 0 && opts->url[len - 1] == '/')
		opts->url[--len] = '\0';

	opts->timeout_ms = crm_int_option(o, "timeout_ms", ctx, CRM_DEFAULT_TIMEOUT_MS);
	opts->connect_timeout_ms = crm_int_option(o, "connect_timeout_ms", ctx, CRM_DEFAULT_CONNECT_TIMEOUT_MS);
	opts->max_retries = crm_int_option(o, "max_retries", ctx, CRM_DEFAULT_MAX_RETRIES);
	opts->retry_base_ms = crm_int_option(o, "retry_base_ms", ctx, CRM_DEFAULT_RETRY_BASE_MS);
	opts->rate_limit_per_minute = crm_int_option(o, "rate_limit_per_minute", ctx, CRM_DEFAULT_RATE_LIMIT);
	opts->page_size = crm_int_option(o, "page_size", ctx, CRM_DEFAULT_PAGE_SIZE);
	opts->max_response_bytes = crm_int_option(o, "max_response_bytes", ctx, CRM_DEFAULT_MAX_RESPONSE_BYTES);
}

/*
 * Resolve the server and the user mapping of userid into what a request needs.
 */
CrmConnInfo *
crmGetConnInfo(Oid serverid, Oid userid)
{
	ForeignServer *server = GetForeignServer(serverid);
	UserMapping *um = GetUserMapping(userid, serverid);
	CrmConnInfo *conn = palloc0(sizeof(CrmConnInfo));
	ListCell   *lc;

	conn->serverid = serverid;
	conn->servername = pstrdup(server->servername);
	crmGetServerOptions(server, &conn->opts);
	foreach(lc, um->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "token") == 0)
			conn->token = pstrdup(defGetString(def));
	}
	if (conn->token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("user mapping for server \"%s\" has no option \"token\"",
						server->servername),
				 errhint("Set it with ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (ADD token '...').",
						 quote_identifier(server->servername))));
	return conn;
}

/*
 * The resource a foreign table reads, and its "minutes" for recent.
 */
CrmResource
crmGetTableResource(Oid relid, int *minutes)
{
	ForeignTable *table = GetForeignTable(relid);
	CrmResource resource = CRM_RESOURCE_APPOINTMENTS;
	ListCell   *lc;

	foreach(lc, table->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "resource") == 0)
		{
			const char *value = defGetString(def);
			int			i;

			for (i = 0; i < lengthof(crm_resource_names); i++)
				if (strcmp(value, crm_resource_names[i]) == 0)
					resource = (CrmResource) i;
		}
	}
	if (minutes)
		*minutes = crm_int_option(table->options, "minutes", ForeignTableRelationId,
								  CRM_DEFAULT_MINUTES);
	return resource;
}

/*
 * The json_path option of a column, or its name: which field fills it.
 */
char *
crmGetColumnJsonPath(Oid relid, AttrNumber attnum, const char *attname)
{
	List	   *options = GetForeignColumnOptions(relid, attnum);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "json_path") == 0)
			return pstrdup(defGetString(def));
	}
	return pstrdup(attname);
}
