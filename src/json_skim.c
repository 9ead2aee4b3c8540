/*-------------------------------------------------------------------------
 *
 * json_skim.c
 *		  A page of a listing read for its rows' keys alone, for scans that
 *		  return no column (count(*)): one validating pass over the response
 *		  that builds no document.
 *
 * Building jansson's document is nearly all the CPU such a scan spends, and
 * it needs of each row only what crm_check_seen needs (id and version).
 * The skim vouches only for a text that jansson accepts and reads the same
 * way: anything else (an error, an escape in a key, a number near jansson's
 * limits, a deep document) makes it give up, and the caller parses with
 * crmJsonParse, which gives the result or the error the full parse gives.
 * test/fuzz/fuzz_skim.c holds the skim to that against jansson.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"

/* Deeper documents are left to jansson (its own limit is 2048). */
#define SKIM_MAX_DEPTH	32
/* Keys of one object checked for duplicates; more are left to jansson. */
#define SKIM_MAX_KEYS	64

typedef struct SkimState
{
	const char *p;
	const char *end;
	int			depth;
} SkimState;

/* The keys of one object read so far, to refuse a duplicate as jansson does. */
typedef struct SkimKeys
{
	int			n;
	const char *start[SKIM_MAX_KEYS];
	size_t		len[SKIM_MAX_KEYS];
} SkimKeys;

/* Reads the value of an object's member named key (len bytes). */
typedef bool (*SkimMember) (SkimState *s, const char *key, size_t len, void *arg);

static bool skim_value(SkimState *s);

static inline void
skim_ws(SkimState *s)
{
	while (s->p < s->end &&
		   (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/* Consume c (after white space), or fail. */
static inline bool
skim_expect(SkimState *s, char c)
{
	skim_ws(s);
	if (s->p >= s->end || *s->p != c)
		return false;
	s->p++;
	return true;
}

/* Four hex digits of a \u escape. */
static bool
skim_hex4(SkimState *s, int *code)
{
	int			i;

	*code = 0;
	if (s->end - s->p < 4)
		return false;
	for (i = 0; i < 4; i++)
	{
		char		c = *s->p++;

		*code <<= 4;
		if (c >= '0' && c <= '9')
			*code |= c - '0';
		else if (c >= 'a' && c <= 'f')
			*code |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			*code |= c - 'A' + 10;
		else
			return false;
	}
	return true;
}

/*
 * A string at s->p (its opening quote).  *start and *len give its raw bytes
 * between the quotes, *escaped whether they hold an escape (then they are not
 * its value).  UTF-8 is checked as jansson checks it, and a \u surrogate must
 * be a proper pair.
 */
static bool
skim_string(SkimState *s, const char **start, size_t *len, bool *escaped)
{
	*escaped = false;
	s->p++;
	*start = s->p;
	while (s->p < s->end)
	{
		unsigned char c = (unsigned char) *s->p;

		if (c == '"')
		{
			*len = s->p - *start;
			s->p++;
			return true;
		}
		if (c >= 0x20 && c < 0x80 && c != '\\')
			s->p++;
		else if (c < 0x20)
			return false;
		else if (c == '\\')
		{
			int			code;

			*escaped = true;
			if (++s->p >= s->end)
				return false;
			switch (*s->p++)
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					break;
				case 'u':
					if (!skim_hex4(s, &code) || (code >= 0xDC00 && code <= 0xDFFF))
						return false;
					if (code >= 0xD800 && code <= 0xDBFF)
					{
						if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
							return false;
						s->p += 2;
						if (!skim_hex4(s, &code) || code < 0xDC00 || code > 0xDFFF)
							return false;
					}
					break;
				default:
					return false;
			}
		}
		else
		{
			/*
			 * A multibyte character: jansson's checks are PostgreSQL's (no
			 * overlong form, no surrogate, nothing past U+10FFFF).
			 */
			int			n = pg_utf_mblen((const unsigned char *) s->p);

			if (n < 2 || s->end - s->p < n ||
				!pg_utf8_islegal((const unsigned char *) s->p, n))
				return false;
			s->p += n;
		}
	}
	return false;
}

/*
 * A number.  An integer of up to 18 digits (which strtoll takes exactly) sets
 * *is_integer and *value; with a fraction (no exponent) the 18 digits of the
 * integral part keep the real far from overflow.  Longer integers and
 * exponents are left to jansson.
 */
static bool
skim_number(SkimState *s, bool *is_integer, int64 *value)
{
	bool		negative = false;
	int64		v = 0;
	int			digits = 0;

	if (*s->p == '-')
	{
		negative = true;
		s->p++;
	}
	if (s->p >= s->end || *s->p < '0' || *s->p > '9')
		return false;
	if (*s->p == '0')
	{
		s->p++;
		digits = 1;
		if (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			return false;
	}
	else
	{
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		{
			if (++digits > 18)
				return false;
			v = v * 10 + (*s->p++ - '0');
		}
	}
	*is_integer = true;
	*value = negative ? -v : v;
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
		return false;
	if (s->p < s->end && *s->p == '.')
	{
		*is_integer = false;
		s->p++;
		if (s->p >= s->end || *s->p < '0' || *s->p > '9')
			return false;
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
		if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
			return false;
	}
	return true;
}

static bool
skim_literal(SkimState *s, const char *word, size_t len)
{
	if ((size_t) (s->end - s->p) < len || memcmp(s->p, word, len) != 0)
		return false;
	s->p += len;
	return true;
}

/*
 * The next key of an object, and the colon after it.  A key with an escape
 * could equal another once decoded, so it is left to jansson.
 */
static bool
skim_key(SkimState *s, SkimKeys *keys, const char **key, size_t *len)
{
	bool		escaped;
	int			i;

	skim_ws(s);
	if (s->p >= s->end || *s->p != '"' ||
		!skim_string(s, key, len, &escaped) || escaped ||
		keys->n >= SKIM_MAX_KEYS)
		return false;
	for (i = 0; i < keys->n; i++)
	{
		if (keys->len[i] == *len && memcmp(keys->start[i], *key, *len) == 0)
			return false;
	}
	keys->start[keys->n] = *key;
	keys->len[keys->n] = *len;
	keys->n++;
	if (!skim_expect(s, ':'))
		return false;
	skim_ws(s);
	return s->p < s->end;
}

/*
 * After a member or element: true with *more when a comma follows, true
 * without it at the closing bracket.
 */
static inline bool
skim_next(SkimState *s, char close, bool *more)
{
	skim_ws(s);
	if (s->p >= s->end)
		return false;
	if (*s->p == ',')
		*more = true;
	else if (*s->p == close)
		*more = false;
	else
		return false;
	s->p++;
	return true;
}

/* Opening bracket at s->p: step in, and tell whether the container is empty. */
static bool
skim_open(SkimState *s, char close, bool *empty)
{
	if (++s->depth > SKIM_MAX_DEPTH)
		return false;
	s->p++;
	skim_ws(s);
	if (s->p >= s->end)
		return false;
	*empty = (*s->p == close);
	if (*empty)
	{
		s->p++;
		s->depth--;
	}
	return true;
}

/*
 * An object at s->p, each member's value read by member (given its key and
 * arg), or skipped when member is NULL.
 */
static bool
skim_members(SkimState *s, SkimMember member, void *arg)
{
	SkimKeys	keys;
	bool		empty;
	bool		more;
	const char *key;
	size_t		len;

	if (*s->p != '{' || !skim_open(s, '}', &empty))
		return false;
	if (empty)
		return true;
	keys.n = 0;
	do
	{
		if (!skim_key(s, &keys, &key, &len) ||
			!(member ? member(s, key, len, arg) : skim_value(s)) ||
			!skim_next(s, '}', &more))
			return false;
	} while (more);
	s->depth--;
	return true;
}

static bool
skim_array(SkimState *s)
{
	bool		empty;
	bool		more;

	if (!skim_open(s, ']', &empty))
		return false;
	if (empty)
		return true;
	do
	{
		skim_ws(s);
		if (s->p >= s->end || !skim_value(s) || !skim_next(s, ']', &more))
			return false;
	} while (more);
	s->depth--;
	return true;
}

static bool
skim_value(SkimState *s)
{
	const char *str;
	size_t		len;
	bool		flag;
	int64		v;

	switch (*s->p)
	{
		case '{':
			return skim_members(s, NULL, NULL);
		case '[':
			return skim_array(s);
		case '"':
			return skim_string(s, &str, &len, &flag);
		case 't':
			return skim_literal(s, "true", 4);
		case 'f':
			return skim_literal(s, "false", 5);
		case 'n':
			return skim_literal(s, "null", 4);
		default:
			return skim_number(s, &flag, &v);
	}
}

#define SKIM_KEY_IS(key, len, word) \
	((len) == sizeof(word) - 1 && memcmp((key), (word), (len)) == 0)

/* A member of a row: "id" and "updated_at" make its key (CrmRowKey *arg). */
static bool
skim_row_member(SkimState *s, const char *key, size_t len, void *arg)
{
	CrmRowKey  *rk = (CrmRowKey *) arg;

	if (SKIM_KEY_IS(key, len, "id") &&
		(*s->p == '-' || (*s->p >= '0' && *s->p <= '9')))
	{
		if (!skim_number(s, &rk->has_id, &rk->id))
			return false;
		if (!rk->has_id)
			rk->id = 0;			/* a real: no key */
		return true;
	}
	if (SKIM_KEY_IS(key, len, "updated_at") && *s->p == '"')
	{
		const char *str;
		size_t		slen;
		bool		escaped;

		if (!skim_string(s, &str, &slen, &escaped) || escaped)
			return false;
		rk->version = hash_bytes((const unsigned char *) str, (int) slen);
		return true;
	}
	return skim_value(s);
}

/* "data": the rows, each an object. */
static bool
skim_rows(SkimState *s, CrmPage *page)
{
	size_t		allocated = 128;
	CrmRowKey  *key;
	bool		empty;
	bool		more;

	if (*s->p != '[' || !skim_open(s, ']', &empty))
		return false;
	page->keys = palloc(sizeof(CrmRowKey) * allocated);
	page->nrows = 0;
	if (empty)
		return true;
	do
	{
		CHECK_FOR_INTERRUPTS();
		if (page->nrows == allocated)
		{
			allocated *= 2;
			/* max_response_bytes allows pages of more than 2^25 rows */
			page->keys = repalloc_huge(page->keys, sizeof(CrmRowKey) * allocated);
		}
		skim_ws(s);
		if (s->p >= s->end)
			return false;
		key = &page->keys[page->nrows++];
		key->has_id = false;
		key->id = 0;
		key->version = 0;
		if (!skim_members(s, skim_row_member, key) || !skim_next(s, ']', &more))
			return false;
	} while (more);
	s->depth--;
	return true;
}

/* What the envelope's members have told so far. */
typedef struct SkimEnvelope
{
	CrmPage    *page;
	int			pagination_fields;
	bool		have_data;
} SkimEnvelope;

/*
 * A member of "pagination": the three fields as plain non-negative integers;
 * any other form (a string, a real, a negative number) is left to
 * crmParsePage, which takes some and explains the rest.
 */
static bool
skim_pagination_member(SkimState *s, const char *key, size_t len, void *arg)
{
	SkimEnvelope *env = (SkimEnvelope *) arg;
	int64	   *field;
	bool		is_integer;

	if (SKIM_KEY_IS(key, len, "total"))
		field = &env->page->total;
	else if (SKIM_KEY_IS(key, len, "current_page"))
		field = &env->page->current_page;
	else if (SKIM_KEY_IS(key, len, "last_page"))
		field = &env->page->last_page;
	else
		return skim_value(s);
	env->pagination_fields++;
	return *s->p >= '0' && *s->p <= '9' &&
		skim_number(s, &is_integer, field) && is_integer;
}

/* A member of the response object. */
static bool
skim_envelope_member(SkimState *s, const char *key, size_t len, void *arg)
{
	SkimEnvelope *env = (SkimEnvelope *) arg;

	if (SKIM_KEY_IS(key, len, "data"))
	{
		env->have_data = true;
		return skim_rows(s, env->page);
	}
	if (SKIM_KEY_IS(key, len, "pagination"))
	{
		if (*s->p == 'n')
			return skim_literal(s, "null", 4);
		/* a field missing is left to crmParsePage to explain */
		if (!skim_members(s, skim_pagination_member, env) ||
			env->pagination_fields != 3)
			return false;
		env->page->has_pagination = true;
		return true;
	}
	if (SKIM_KEY_IS(key, len, "success") && *s->p == 'f')
		return false;			/* the API reported failure */
	return skim_value(s);
}

/*
 * Read a response of GET /appointments or /appointments/recent as
 * crmParsePage would, keeping of each row only its key (page->keys; no
 * page->rows).  False when the skim cannot vouch for the text: the caller
 * then parses it whole.
 */
bool
crmSkimPage(const char *text, size_t len, CrmPage *page)
{
	SkimState	s;
	SkimEnvelope env;

	memset(page, 0, sizeof(CrmPage));
	crmJsonSkipBom(&text, &len);
	s.p = text;
	s.end = text + len;
	s.depth = 0;
	env.page = page;
	env.pagination_fields = 0;
	env.have_data = false;

	skim_ws(&s);
	if (s.p >= s.end || !skim_members(&s, skim_envelope_member, &env))
		return false;
	skim_ws(&s);
	return s.p == s.end && env.have_data;
}
