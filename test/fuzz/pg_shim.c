/*-------------------------------------------------------------------------
 *
 * pg_shim.c
 *		  A small stand-in for the parts of the PostgreSQL backend that
 *		  src/json_datum.c calls, so that file links, unmodified, into a
 *		  libFuzzer binary: memory contexts, ereport/elog, fmgr calls, List,
 *		  StringInfo, encoding checks and conversion, stack depth and
 *		  interrupts.  The type input functions are in pg_types.c.
 *
 * Memory contexts: every palloc is its own malloc (with a header), linked
 * into its context, so AddressSanitizer sees the exact bounds of each chunk
 * and a use after a context reset.  A reset runs the reset callbacks
 * (last registered first, as PostgreSQL does), then frees every chunk.  New
 * chunks are filled with 0xA5, so reading memory nobody wrote shows.
 *
 * Errors: ereport(ERROR) formats every field (so bad format arguments
 * show), runs the error context callbacks in an "ErrorContext" as errfinish
 * does, checks what json_datum.c promises about its messages, then
 * siglongjmp()s to the innermost SHIM_TRY of the harness.  FATAL or PANIC,
 * an ERROR outside any SHIM_TRY, and an ERROR raised by an error context
 * callback abort() (a finding).
 *
 * Formatting (pg_snprintf), UTF-8 checks (pg_encoding_verifymbstr,
 * pg_utf8_islegal, ...) and double_to_shortest_decimal_buf are PostgreSQL's
 * own, linked from libpgport.a and libpgcommon.a.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_shim.h"

#include <stdio.h>
#include <stdlib.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/memnodes.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"

/* ---------- globals the backend defines ---------- */

MemoryContext CurrentMemoryContext = NULL;
ErrorContextCallback *error_context_stack = NULL;
volatile sig_atomic_t InterruptPending = false;

MemoryContext shim_top_context = NULL;
static MemoryContext shim_input_context = NULL;
static MemoryContext shim_error_context = NULL;

ShimError	shim_error;
sigjmp_buf *shim_exception_stack = NULL;
long		shim_calls = 0;
long		shim_rejections = 0;
bool		shim_verbose = false;

/*
 * What the error context callbacks of one error may allocate.  They write a
 * line of at most 4 kB that shows only the start of a value, so more means
 * they built text nobody sees (such as a whole 10 MB value, to cut it).
 */
#define SHIM_CALLBACK_BYTES_MAX (16 * 1024)

/* Set while errfinish runs the error context callbacks. */
static bool shim_in_callbacks = false;
static Size shim_callback_bytes = 0;

static int	shim_db_encoding = PG_UTF8;
static bool shim_interrupts = false;
static char *shim_stack_base = NULL;
/* PostgreSQL's default max_stack_depth. */
static const long shim_max_stack_depth = 2048L * 1024L;

void
shim_fail(const char *fmt,...)
{
	va_list		args;

	fprintf(stderr, "\n*** crm_fdw fuzz shim: invariant failed: ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n");
	if (shim_error.message)
		fprintf(stderr, "*** last error: %s\n", shim_error.message);
	fflush(stderr);
	abort();
}


/* ---------- memory contexts ---------- */

#define SHIM_CHUNK_MAGIC UINT64CONST(0x5348494d43484e4b)	/* "SHIMCHNK" */

typedef struct ShimChunk
{
	struct ShimChunk *prev;
	struct ShimChunk *next;
	Size		size;
	uint64		magic;
	MemoryContext context;		/* last, right before the data, as in aset.c */
} ShimChunk;

typedef struct ShimContext
{
	MemoryContextData header;
	ShimChunk	chunks;			/* list head (sentinel) */
} ShimContext;

StaticAssertDecl(sizeof(ShimChunk) % MAXIMUM_ALIGNOF == 0, "chunk header alignment");

static MemoryContext
shim_context_create(const char *name)
{
	ShimContext *cxt = calloc(1, sizeof(ShimContext));

	if (cxt == NULL)
		shim_fail("out of memory creating a context");
	cxt->header.type = T_AllocSetContext;
	cxt->header.name = name;
	cxt->header.isReset = true;
	cxt->chunks.prev = cxt->chunks.next = &cxt->chunks;
	return &cxt->header;
}

static ShimChunk *
shim_chunk_of(void *pointer, const char *what)
{
	ShimChunk  *chunk;

	if (pointer == NULL)
		shim_fail("%s(NULL)", what);
	chunk = (ShimChunk *) ((char *) pointer - sizeof(ShimChunk));
	if (chunk->magic != SHIM_CHUNK_MAGIC)
		shim_fail("%s of a pointer that palloc did not return (or freed)", what);
	return chunk;
}

static void *
shim_alloc(MemoryContext context, Size size, bool huge)
{
	ShimContext *cxt = (ShimContext *) context;
	ShimChunk  *chunk;

	if (context == NULL)
		shim_fail("palloc without a current memory context");
	if (huge ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	if (shim_in_callbacks)
		shim_callback_bytes += size;
	chunk = malloc(sizeof(ShimChunk) + size);
	if (chunk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu in memory context \"%s\".",
						   size, context->name)));
	chunk->size = size;
	chunk->magic = SHIM_CHUNK_MAGIC;
	chunk->context = context;
	chunk->next = cxt->chunks.next;
	chunk->prev = &cxt->chunks;
	chunk->next->prev = chunk;
	cxt->chunks.next = chunk;
	context->isReset = false;
	memset(chunk + 1, 0xA5, size);
	return chunk + 1;
}

static void
shim_unlink_free(ShimChunk *chunk)
{
	chunk->prev->next = chunk->next;
	chunk->next->prev = chunk->prev;
	chunk->magic = 0;
	free(chunk);
}

/* MemoryContextReset: callbacks first (the latest first), then the memory. */
static void
shim_context_reset(MemoryContext context)
{
	ShimContext *cxt = (ShimContext *) context;
	MemoryContextCallback *cb;

	while ((cb = context->reset_cbs) != NULL)
	{
		context->reset_cbs = cb->next;
		cb->func(cb->arg);
	}
	while (cxt->chunks.next != &cxt->chunks)
		shim_unlink_free(cxt->chunks.next);
	context->isReset = true;
}

void *
palloc(Size size)
{
	return shim_alloc(CurrentMemoryContext, size, false);
}

void *
palloc0(Size size)
{
	void	   *p = shim_alloc(CurrentMemoryContext, size, false);

	memset(p, 0, size);
	return p;
}

void *
palloc_extended(Size size, int flags)
{
	void	   *p = shim_alloc(CurrentMemoryContext, size,
							   (flags & MCXT_ALLOC_HUGE) != 0);

	if (flags & MCXT_ALLOC_ZERO)
		memset(p, 0, size);
	return p;
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return shim_alloc(context, size, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	void	   *p = shim_alloc(context, size, false);

	memset(p, 0, size);
	return p;
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return shim_alloc(context, size, true);
}

void
pfree(void *pointer)
{
	shim_unlink_free(shim_chunk_of(pointer, "pfree"));
}

static void *
shim_realloc(void *pointer, Size size, bool huge)
{
	ShimChunk  *chunk = shim_chunk_of(pointer, "repalloc");
	ShimChunk  *moved;
	Size		old = chunk->size;

	if (huge ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	if (shim_in_callbacks && size > old)
		shim_callback_bytes += size - old;
	/* unlink, realloc, link the (maybe moved) chunk where it was */
	chunk->prev->next = chunk->next;
	chunk->next->prev = chunk->prev;
	moved = realloc(chunk, sizeof(ShimChunk) + size);
	if (moved == NULL)
	{
		chunk->prev->next = chunk;
		chunk->next->prev = chunk;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu.", size)));
	}
	moved->prev->next = moved;
	moved->next->prev = moved;
	moved->size = size;
	if (size > old)
		memset((char *) (moved + 1) + old, 0xA5, size - old);
	return moved + 1;
}

void *
repalloc(void *pointer, Size size)
{
	return shim_realloc(pointer, size, false);
}

void *
repalloc_huge(void *pointer, Size size)
{
	return shim_realloc(pointer, size, true);
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	Size		len = strlen(string) + 1;
	char	   *p = shim_alloc(context, len, false);

	memcpy(p, string, len);
	return p;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

void
MemoryContextRegisterResetCallback(MemoryContext context,
								   MemoryContextCallback *cb)
{
	cb->next = context->reset_cbs;
	context->reset_cbs = cb;
	context->isReset = false;
}

void
MemoryContextReset(MemoryContext context)
{
	shim_context_reset(context);
}


/* ---------- StringInfo (same contract as lib/stringinfo.c) ---------- */

size_t
pvsnprintf(char *buf, size_t len, const char *fmt, va_list args)
{
	int			nprinted;

	nprinted = vsnprintf(buf, len, fmt, args);
	if (unlikely(nprinted < 0))
		elog(ERROR, "vsnprintf failed: %m with format string \"%s\"", fmt);
	if ((size_t) nprinted < len)
		return (size_t) nprinted;
	if (unlikely((size_t) nprinted > MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory")));
	return nprinted + 1;
}

void
initStringInfo(StringInfo str)
{
	int			size = 1024;

	str->data = (char *) palloc(size);
	str->maxlen = size;
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

StringInfo
makeStringInfo(void)
{
	StringInfo	res = (StringInfo) palloc(sizeof(StringInfoData));

	initStringInfo(res);
	return res;
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	int			newlen;

	if (needed < 0)
		elog(ERROR, "invalid string enlargement request size: %d", needed);
	if (((Size) needed) >= (MaxAllocSize - (Size) str->len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory"),
				 errdetail("Cannot enlarge string buffer containing %d bytes by %d more bytes.",
						   str->len, needed)));
	needed += str->len + 1;
	if (needed <= str->maxlen)
		return;
	newlen = 2 * str->maxlen;
	while (needed > newlen)
		newlen = 2 * newlen;
	if (newlen > (int) MaxAllocSize)
		newlen = (int) MaxAllocSize;
	str->data = (char *) repalloc(str->data, newlen);
	str->maxlen = newlen;
}

int
appendStringInfoVA(StringInfo str, const char *fmt, va_list args)
{
	int			avail;
	size_t		nprinted;

	avail = str->maxlen - str->len;
	if (avail < 16)
		return 32;
	nprinted = pvsnprintf(str->data + str->len, (size_t) avail, fmt, args);
	if (nprinted < (size_t) avail)
	{
		str->len += (int) nprinted;
		return 0;
	}
	str->data[str->len] = '\0';
	return (int) nprinted;
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	int			save_errno = errno;

	for (;;)
	{
		va_list		args;
		int			needed;

		errno = save_errno;
		va_start(args, fmt);
		needed = appendStringInfoVA(str, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(str, needed);
	}
}

void
appendBinaryStringInfo(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	if (str->len + 1 >= str->maxlen)
		enlargeStringInfo(str, 1);
	str->data[str->len] = ch;
	str->len++;
	str->data[str->len] = '\0';
}

char *
psprintf(const char *fmt,...)
{
	int			save_errno = errno;
	size_t		len = 128;

	for (;;)
	{
		char	   *result;
		va_list		args;
		size_t		newlen;

		result = (char *) palloc(len);
		errno = save_errno;
		va_start(args, fmt);
		newlen = pvsnprintf(result, len, fmt, args);
		va_end(args);
		if (newlen < len)
			return result;
		pfree(result);
		len = newlen;
	}
}


/* ---------- text ---------- */

text *
cstring_to_text_with_len(const char *s, int len)
{
	text	   *result = (text *) palloc(len + VARHDRSZ);

	SET_VARSIZE(result, len + VARHDRSZ);
	memcpy(VARDATA(result), s, len);
	return result;
}

text *
cstring_to_text(const char *s)
{
	return cstring_to_text_with_len(s, strlen(s));
}

char *
text_to_cstring(const text *t)
{
	int			len = VARSIZE_ANY_EXHDR(t);
	char	   *result = palloc(len + 1);

	memcpy(result, VARDATA_ANY(t), len);
	result[len] = '\0';
	return result;
}


/* ---------- List and String nodes ---------- */

List *
lappend(List *list, void *datum)
{
	if (list == NIL)
	{
		list = palloc(offsetof(List, initial_elements) + 4 * sizeof(ListCell));
		list->type = T_List;
		list->length = 0;
		list->max_length = 4;
		list->elements = list->initial_elements;
	}
	else if (list->type != T_List)
		shim_fail("lappend on a list of type %d", (int) list->type);
	if (list->length >= list->max_length)
	{
		int			newmax = list->max_length * 2;
		ListCell   *cells = palloc(newmax * sizeof(ListCell));

		memcpy(cells, list->elements, list->length * sizeof(ListCell));
		if (list->elements != list->initial_elements)
			pfree(list->elements);
		list->elements = cells;
		list->max_length = newmax;
	}
	list->elements[list->length].ptr_value = datum;
	list->length++;
	return list;
}

String *
makeString(char *str)
{
	String	   *v = palloc(sizeof(String));

	v->type = T_String;
	v->sval = str;
	return v;
}


/* ---------- fmgr ---------- */

void
fmgr_info_cxt(Oid functionId, FmgrInfo *finfo, MemoryContext mcxt)
{
	memset(finfo, 0, sizeof(FmgrInfo));
	finfo->fn_addr = shim_type_input(functionId);
	if (finfo->fn_addr == NULL)
		elog(ERROR, "cache lookup failed for function %u", functionId);
	finfo->fn_oid = functionId;
	finfo->fn_nargs = 3;
	/* every input function of the column set is strict but domain_in */
	finfo->fn_strict = (functionId != F_DOMAIN_IN);
	finfo->fn_mcxt = mcxt;
}

Datum
InputFunctionCall(FmgrInfo *flinfo, char *str, Oid typioparam, int32 typmod)
{
	LOCAL_FCINFO(fcinfo, 3);
	Datum		result;

	if (str == NULL && flinfo->fn_strict)
		return (Datum) 0;
	InitFunctionCallInfoData(*fcinfo, flinfo, 3, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetDatum(str);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = ObjectIdGetDatum(typioparam);
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = Int32GetDatum(typmod);
	fcinfo->args[2].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (str == NULL ? !fcinfo->isnull : fcinfo->isnull)
		shim_fail("input function %u: NULL in/out mismatch", flinfo->fn_oid);
	return result;
}

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

Datum
DirectFunctionCall3Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2,
						Datum arg3)
{
	LOCAL_FCINFO(fcinfo, 3);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 3, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = arg3;
	fcinfo->args[2].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}


/* ---------- stack depth and interrupts ---------- */

void
check_stack_depth(void)
{
	/* the frame address, not a local: ASan may move locals off the stack */
	char	   *here = (char *) __builtin_frame_address(0);
	long		depth = (long) (shim_stack_base - here);

	if (depth < 0)
		depth = -depth;
	if (depth > shim_max_stack_depth)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("stack depth limit exceeded"),
				 errhint("Increase the configuration parameter \"max_stack_depth\" (currently %ldkB), after ensuring the platform's stack depth limit is adequate.",
						 shim_max_stack_depth / 1024)));
}

/* A cancel arrives: the next CHECK_FOR_INTERRUPTS raises it. */
void
ProcessInterrupts(void)
{
	if (!InterruptPending)
		return;
	InterruptPending = false;
	if (shim_interrupts)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement due to user request")));
}


/* ---------- encodings ---------- */

int
GetDatabaseEncoding(void)
{
	return shim_db_encoding;
}

static const char *
shim_encoding_name(int encoding)
{
	switch (encoding)
	{
		case PG_UTF8:
			return "UTF8";
		case PG_LATIN1:
			return "LATIN1";
		case PG_SQL_ASCII:
			return "SQL_ASCII";
	}
	return "?";
}

void
report_invalid_encoding(int encoding, const char *mbstr, int len)
{
	int			l = pg_encoding_mblen(encoding, mbstr);
	char		buf[8 * 5 + 1];
	char	   *p = buf;
	int			j,
				jlimit;

	jlimit = Min(l, len);
	jlimit = Min(jlimit, 8);
	for (j = 0; j < jlimit; j++)
	{
		p += sprintf(p, "0x%02x", (unsigned char) mbstr[j]);
		if (j < jlimit - 1)
			p += sprintf(p, " ");
	}
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("invalid byte sequence for encoding \"%s\": %s",
					shim_encoding_name(encoding), buf)));
}

void
report_untranslatable_char(int src_encoding, int dest_encoding,
						   const char *mbstr, int len)
{
	int			l = pg_encoding_mblen(src_encoding, mbstr);
	char		buf[8 * 5 + 1];
	char	   *p = buf;
	int			j,
				jlimit;

	jlimit = Min(l, len);
	jlimit = Min(jlimit, 8);
	for (j = 0; j < jlimit; j++)
	{
		p += sprintf(p, "0x%02x", (unsigned char) mbstr[j]);
		if (j < jlimit - 1)
			p += sprintf(p, " ");
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
			 errmsg("character with byte sequence %s in encoding \"%s\" has no equivalent in encoding \"%s\"",
					buf, shim_encoding_name(src_encoding),
					shim_encoding_name(dest_encoding))));
}

/* pg_verify_mbstr: PostgreSQL's own verifier, ERROR on the first bad byte. */
static bool
shim_verify_mbstr(int encoding, const char *mbstr, int len, bool noError)
{
	int			ok_bytes = pg_encoding_verifymbstr(encoding, mbstr, len);

	if (ok_bytes == len)
		return true;
	if (noError)
		return false;
	report_invalid_encoding(encoding, mbstr + ok_bytes, len - ok_bytes);
}

bool
pg_verifymbstr(const char *mbstr, int len, bool noError)
{
	return shim_verify_mbstr(shim_db_encoding, mbstr, len, noError);
}

/* utf8_to_iso8859_1 of PostgreSQL: verify, convert, refuse above U+00FF. */
static char *
shim_utf8_to_latin1(const unsigned char *src, int len)
{
	unsigned char *result;
	unsigned char *dest;

	if ((Size) len >= (MaxAllocHugeSize / (Size) MAX_CONVERSION_GROWTH))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory"),
				 errdetail("String of %d bytes is too long for encoding conversion.",
						   len)));
	result = MemoryContextAllocHuge(CurrentMemoryContext,
									(Size) len * MAX_CONVERSION_GROWTH + 1);
	dest = result;
	while (len > 0)
	{
		unsigned short c = *src;

		if (c == 0)
			report_invalid_encoding(PG_UTF8, (const char *) src, len);
		if (!IS_HIGHBIT_SET(c))
		{
			*dest++ = c;
			src++;
			len--;
		}
		else
		{
			int			l = pg_utf_mblen(src);

			if (l > len || !pg_utf8_islegal(src, l))
				report_invalid_encoding(PG_UTF8, (const char *) src, len);
			if (l != 2)
				report_untranslatable_char(PG_UTF8, PG_LATIN1,
										   (const char *) src, len);
			c = src[1];
			c = ((src[0] & 0x1f) << 6) | (c & 0x3f);
			if (c > 0xff)
				report_untranslatable_char(PG_UTF8, PG_LATIN1,
										   (const char *) src, len);
			*dest++ = (unsigned char) c;
			src += l;
			len -= l;
		}
	}
	*dest = '\0';
	return (char *) result;
}

char *
pg_any_to_server(const char *s, int len, int encoding)
{
	if (len <= 0)
		return unconstify(char *, s);
	if (encoding == shim_db_encoding || encoding == PG_SQL_ASCII)
	{
		(void) shim_verify_mbstr(shim_db_encoding, s, len, false);
		return unconstify(char *, s);
	}
	if (shim_db_encoding == PG_SQL_ASCII)
	{
		/* UTF8 is a valid backend encoding: just verify it */
		(void) shim_verify_mbstr(encoding, s, len, false);
		return unconstify(char *, s);
	}
	if (encoding == PG_UTF8 && shim_db_encoding == PG_LATIN1)
		return shim_utf8_to_latin1((const unsigned char *) s, len);
	shim_fail("pg_any_to_server from encoding %d not modelled", encoding);
}


/* ---------- ereport / elog ---------- */

/* One error being built; a nested one (raised while evaluating the
 * arguments of another) gets the next slot, as errordata[] does. */
typedef struct ShimErrorData
{
	int			elevel;
	int			sqlerrcode;
	StringInfoData message;
	StringInfoData detail;
	StringInfoData hint;
	StringInfoData context;
	bool		has_detail;
	bool		has_hint;
} ShimErrorData;

#define SHIM_ERRORDATA_SIZE 5
static ShimErrorData shim_errordata[SHIM_ERRORDATA_SIZE];
static int	shim_errordata_depth = -1;

static ShimErrorData *
shim_cur_error(const char *what)
{
	if (shim_errordata_depth < 0)
		shim_fail("%s outside ereport", what);
	return &shim_errordata[shim_errordata_depth];
}

bool
errstart(int elevel, const char *domain)
{
	ShimErrorData *ed;
	MemoryContext old;

	if (shim_in_callbacks)
		shim_fail("an error context callback raised an error (level %d)", elevel);
	if (elevel >= FATAL)
		shim_fail("ereport at level %d (FATAL or PANIC)", elevel);
	if (shim_errordata_depth + 1 >= SHIM_ERRORDATA_SIZE)
		shim_fail("ERRORDATA_STACK_SIZE exceeded");
	ed = &shim_errordata[++shim_errordata_depth];
	memset(ed, 0, sizeof(ShimErrorData));
	ed->elevel = elevel;
	ed->sqlerrcode = (elevel >= ERROR) ? ERRCODE_INTERNAL_ERROR :
		(elevel == WARNING ? ERRCODE_WARNING : ERRCODE_SUCCESSFUL_COMPLETION);
	old = MemoryContextSwitchTo(shim_error_context);
	initStringInfo(&ed->message);
	initStringInfo(&ed->detail);
	initStringInfo(&ed->hint);
	initStringInfo(&ed->context);
	MemoryContextSwitchTo(old);
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

int
errcode(int sqlerrcode)
{
	shim_cur_error("errcode")->sqlerrcode = sqlerrcode;
	return 0;
}

/* Append a formatted string to buf, in the error context. */
#define SHIM_EVALUATE(buf, fmt) \
	do { \
		MemoryContext old_ = MemoryContextSwitchTo(shim_error_context); \
		for (;;) \
		{ \
			va_list		args_; \
			int			needed_; \
			va_start(args_, fmt); \
			needed_ = appendStringInfoVA((buf), (fmt), args_); \
			va_end(args_); \
			if (needed_ == 0) \
				break; \
			enlargeStringInfo((buf), needed_); \
		} \
		MemoryContextSwitchTo(old_); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	SHIM_EVALUATE(&shim_cur_error("errmsg")->message, fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	SHIM_EVALUATE(&shim_cur_error("errmsg_internal")->message, fmt);
	return 0;
}

int
errmsg_plural(const char *fmt_singular, const char *fmt_plural,
			  unsigned long n,...)
{
	ShimErrorData *ed = shim_cur_error("errmsg_plural");
	const char *fmt = (n == 1) ? fmt_singular : fmt_plural;
	MemoryContext old = MemoryContextSwitchTo(shim_error_context);

	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, n);
		needed = appendStringInfoVA(&ed->message, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&ed->message, needed);
	}
	MemoryContextSwitchTo(old);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	ShimErrorData *ed = shim_cur_error("errdetail");

	SHIM_EVALUATE(&ed->detail, fmt);
	ed->has_detail = true;
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	ShimErrorData *ed = shim_cur_error("errdetail_internal");

	SHIM_EVALUATE(&ed->detail, fmt);
	ed->has_detail = true;
	return 0;
}

int
errdetail_plural(const char *fmt_singular, const char *fmt_plural,
				 unsigned long n,...)
{
	ShimErrorData *ed = shim_cur_error("errdetail_plural");
	const char *fmt = (n == 1) ? fmt_singular : fmt_plural;
	MemoryContext old = MemoryContextSwitchTo(shim_error_context);

	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, n);
		needed = appendStringInfoVA(&ed->detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&ed->detail, needed);
	}
	MemoryContextSwitchTo(old);
	ed->has_detail = true;
	return 0;
}

int
errhint(const char *fmt,...)
{
	ShimErrorData *ed = shim_cur_error("errhint");

	SHIM_EVALUATE(&ed->hint, fmt);
	ed->has_hint = true;
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	ShimErrorData *ed = shim_cur_error("errcontext");

	if (ed->context.len > 0)
		appendStringInfoChar(&ed->context, '\n');
	SHIM_EVALUATE(&ed->context, fmt);
	return 0;
}

/*
 * What json_datum.c promises about an error it raises: a message, every
 * field valid in the database encoding, and (for its own messages and its
 * context lines, which quote remote data) short and free of control
 * characters, so a hostile body cannot flood or forge a log line.
 */
static void
shim_check_message(const char *field, const StringInfoData *s, bool ours,
				   bool newlines_ok)
{
	int			i;

	if (memchr(s->data, '\0', s->len) != NULL)
		shim_fail("error %s contains a NUL byte", field);
	if (!shim_verify_mbstr(shim_db_encoding, s->data, s->len, true))
		shim_fail("error %s is not valid %s: %s", field,
				  shim_encoding_name(shim_db_encoding), s->data);
	if (!ours)
		return;
	if (s->len > 4096)
		shim_fail("error %s of json_datum.c is %d bytes long", field, s->len);
	for (i = 0; i < s->len; i++)
	{
		unsigned char c = (unsigned char) s->data[i];

		if ((c < 0x20 && !(c == '\n' && newlines_ok)) || c == 0x7f)
			shim_fail("error %s of json_datum.c has control character 0x%02x: %s",
					  field, c, s->data);
	}
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	ShimErrorData *ed = shim_cur_error("errfinish");
	ErrorContextCallback *econtext;
	MemoryContext old;
	bool		ours = (filename != NULL && strstr(filename, "json_datum.c") != NULL);

	/* errfinish runs the context callbacks in ErrorContext */
	old = MemoryContextSwitchTo(shim_error_context);
	shim_in_callbacks = true;
	shim_callback_bytes = 0;
	for (econtext = error_context_stack; econtext != NULL;
		 econtext = econtext->previous)
		econtext->callback(econtext->arg);
	shim_in_callbacks = false;
	MemoryContextSwitchTo(old);
	if (shim_callback_bytes > SHIM_CALLBACK_BYTES_MAX)
		shim_fail("the error context callbacks allocated %zu bytes for: %s",
				  shim_callback_bytes, ed->message.data);

	if (ed->elevel < ERROR)
	{
		if (shim_verbose)
			fprintf(stderr, "[level %d] %s\n", ed->elevel, ed->message.data);
		shim_errordata_depth--;
		return;
	}

	if (ed->message.len == 0)
		shim_fail("ERROR without a message at %s:%d", filename, lineno);
	shim_check_message("message", &ed->message, ours, false);
	shim_check_message("detail", &ed->detail, ours, false);
	shim_check_message("hint", &ed->hint, ours, false);
	shim_check_message("context", &ed->context, true, true);

	shim_error.elevel = ed->elevel;
	shim_error.sqlerrcode = ed->sqlerrcode;
	shim_error.filename = filename;
	shim_error.lineno = lineno;
	shim_error.funcname = funcname;
	shim_error.message = ed->message.data;
	shim_error.detail = ed->has_detail ? ed->detail.data : NULL;
	shim_error.hint = ed->has_hint ? ed->hint.data : NULL;
	shim_error.context = ed->context.len > 0 ? ed->context.data : NULL;
	shim_errordata_depth = -1;	/* FlushErrorState */

	if (shim_exception_stack == NULL)
		shim_fail("ERROR outside any SHIM_TRY: %s", ed->message.data);
	siglongjmp(*shim_exception_stack, 1);
}

void
shim_report_error(void)
{
	const char *file;

	if (!shim_verbose)
		return;
	file = shim_error.filename ? strrchr(shim_error.filename, '/') : NULL;
	file = file ? file + 1 : (shim_error.filename ? shim_error.filename : "?");
	fprintf(stderr, "ERROR %s (%s:%d): %s\n",
			unpack_sql_state(shim_error.sqlerrcode), file, shim_error.lineno,
			shim_error.message);
	if (shim_error.detail)
		fprintf(stderr, "  DETAIL: %s\n", shim_error.detail);
	if (shim_error.hint)
		fprintf(stderr, "  HINT: %s\n", shim_error.hint);
	if (shim_error.context)
		fprintf(stderr, "  CONTEXT: %s\n", shim_error.context);
}

char *
unpack_sql_state(int sql_state)
{
	static char buf[12];
	int			i;

	for (i = 0; i < 5; i++)
	{
		buf[i] = PGUNSIXBIT(sql_state);
		sql_state >>= 6;
	}
	buf[i] = '\0';
	return buf;
}

void
shim_check_context_stack(ErrorContextCallback *expected, int line)
{
	if (error_context_stack != expected)
		shim_fail("error_context_stack not restored after a successful call (harness line %d)",
				  line);
	if (CurrentMemoryContext != shim_input_context)
		shim_fail("CurrentMemoryContext changed by a call (harness line %d)", line);
}


/* ---------- the harness's side ---------- */

void
shim_init(void)
{
	shim_stack_base = (char *) __builtin_frame_address(0);
	shim_top_context = shim_context_create("TopMemoryContext");
	shim_input_context = shim_context_create("input");
	shim_error_context = shim_context_create("ErrorContext");
	CurrentMemoryContext = shim_top_context;
	shim_verbose = getenv("FUZZ_VERBOSE") != NULL && getenv("FUZZ_VERBOSE")[0] != '\0';
	/* jansson randomizes its hash seed; fix it so runs reproduce */
	json_object_seed(1);
}

void
shim_begin_input(int db_encoding, bool interrupts)
{
	/* measure stack depth from here, as the backend does from its main loop */
	shim_stack_base = (char *) __builtin_frame_address(0);
	shim_db_encoding = db_encoding;
	shim_interrupts = interrupts;
	InterruptPending = interrupts;
	error_context_stack = NULL;
	shim_errordata_depth = -1;
	memset(&shim_error, 0, sizeof(shim_error));
	shim_context_reset(shim_error_context);
	CurrentMemoryContext = shim_input_context;
}

void
shim_end_input(void)
{
	if (error_context_stack != NULL)
		shim_fail("error_context_stack left set at the end of an input");
	CurrentMemoryContext = shim_top_context;
	shim_context_reset(shim_input_context);
	shim_context_reset(shim_error_context);
	InterruptPending = false;
}
