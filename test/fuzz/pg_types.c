/*-------------------------------------------------------------------------
 *
 * pg_types.c
 *		  Stand-ins for the type input functions and the few catalog lookups
 *		  of the fuzzed column set.  Each validates its input with the same
 *		  shape of rules as PostgreSQL's (digits and ranges for integers, an
 *		  ISO date/time grammar with calendar checks and zone offsets,
 *		  numeric precision and scale with rounding, float range, boolean
 *		  words, varchar/char length in characters, JSON validity, domain
 *		  checks) and raises the same SQLSTATEs, so that json_datum.c meets
 *		  acceptance and rejection as it would in a backend.  They are
 *		  deliberately narrower than PostgreSQL's (see README.md): what they
 *		  refuse and PostgreSQL accepts only costs the harness coverage, never
 *		  a false report.
 *
 * Values by reference (numeric, varchar, char, json, jsonb) are returned as
 * a text varlena of their canonical text, which the harness checks.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_shim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

static void
shim_invalid_syntax(const char *type, const char *str)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type %s: \"%s\"", type, str)));
}


/* ---------- integers (pg_strtoint16/32/64) ---------- */

static int64
shim_strtoint(const char *s, int64 min, int64 max, const char *type)
{
	const char *p = s;
	bool		neg = false;
	uint64		acc = 0;
	bool		overflow = false;

	while (*p && isspace((unsigned char) *p))
		p++;
	if (*p == '-')
	{
		neg = true;
		p++;
	}
	else if (*p == '+')
		p++;
	if (!isdigit((unsigned char) *p))
		shim_invalid_syntax(type, s);
	while (isdigit((unsigned char) *p))
	{
		if (acc > (PG_UINT64_MAX - 9) / 10)
			overflow = true;
		else
			acc = acc * 10 + (*p - '0');
		p++;
	}
	while (*p && isspace((unsigned char) *p))
		p++;
	if (*p != '\0')
		shim_invalid_syntax(type, s);
	if (overflow ||
		(neg ? acc > (uint64) (-(min + 1)) + 1 : acc > (uint64) max))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value \"%s\" is out of range for type %s", s, type)));
	return neg ? (int64) (0 - acc) : (int64) acc;
}

Datum
int2in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);

	PG_RETURN_INT16((int16) shim_strtoint(s, PG_INT16_MIN, PG_INT16_MAX, "smallint"));
}

Datum
int4in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);

	PG_RETURN_INT32((int32) shim_strtoint(s, PG_INT32_MIN, PG_INT32_MAX, "integer"));
}

Datum
int8in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);

	PG_RETURN_INT64(shim_strtoint(s, PG_INT64_MIN, PG_INT64_MAX, "bigint"));
}


/* ---------- float8 (float8in_internal) ---------- */

Datum
float8in(PG_FUNCTION_ARGS)
{
	char	   *num = PG_GETARG_CSTRING(0);
	const char *p = num;
	char	   *end;
	double		val;

	while (*p && isspace((unsigned char) *p))
		p++;
	if (*p == '\0')
		shim_invalid_syntax("double precision", num);
	errno = 0;
	val = strtod(p, &end);
	if (end == p || errno != 0)
	{
		if (pg_strncasecmp(p, "NaN", 3) == 0)
		{
			val = get_float8_nan();
			end = unconstify(char *, p) + 3;
		}
		else if (pg_strncasecmp(p, "Infinity", 8) == 0)
		{
			val = get_float8_infinity();
			end = unconstify(char *, p) + 8;
		}
		else if (pg_strncasecmp(p, "-Infinity", 9) == 0)
		{
			val = -get_float8_infinity();
			end = unconstify(char *, p) + 9;
		}
		else if (errno == ERANGE)
		{
			if (val == 0.0 || val >= HUGE_VAL || val <= -HUGE_VAL)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("\"%s\" is out of range for type double precision",
								num)));
		}
		else
			shim_invalid_syntax("double precision", num);
	}
	while (*end && isspace((unsigned char) *end))
		end++;
	if (*end != '\0')
		shim_invalid_syntax("double precision", num);
	PG_RETURN_FLOAT8(val);
}


/* ---------- numeric with typmod (numeric_in, apply_typmod) ---------- */

Datum
numeric_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	const char *p = str;
	bool		neg = false;
	char	   *digits;
	int			ndigits = 0;
	int64		dweight = 0;	/* digits before the decimal point */
	bool		seen_point = false;
	bool		any = false;
	int			precision,
				scale,
				i;
	int64		round_at;
	StringInfoData out;

	while (*p && isspace((unsigned char) *p))
		p++;
	if (pg_strncasecmp(p, "NaN", 3) == 0 ||
		pg_strncasecmp(p, "Infinity", 8) == 0 ||
		pg_strncasecmp(p, "+Infinity", 9) == 0 ||
		pg_strncasecmp(p, "-Infinity", 9) == 0)
	{
		bool		nan = (pg_strncasecmp(p, "NaN", 3) == 0);
		const char *e = p + (nan ? 3 : (*p == 'I' || *p == 'i') ? 8 : 9);

		while (*e && isspace((unsigned char) *e))
			e++;
		if (*e != '\0')
			shim_invalid_syntax("numeric", str);
		if (!nan && typmod >= (int32) VARHDRSZ)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("numeric field overflow"),
					 errdetail("A field with precision %d, scale %d cannot hold an infinite value.",
							   ((typmod - VARHDRSZ) >> 16) & 0xffff,
							   (typmod - VARHDRSZ) & 0x7ff)));
		PG_RETURN_TEXT_P(cstring_to_text(nan ? "NaN" : "Infinity"));
	}

	if (*p == '-')
	{
		neg = true;
		p++;
	}
	else if (*p == '+')
		p++;

	digits = palloc(strlen(p) + 1);
	for (;; p++)
	{
		if (isdigit((unsigned char) *p))
		{
			any = true;
			/* leading zeros of the integer part carry no weight */
			if (ndigits == 0 && *p == '0')
			{
				if (seen_point)
					dweight--;
				continue;
			}
			digits[ndigits++] = *p - '0';
			if (!seen_point)
				dweight++;
		}
		else if (*p == '.' && !seen_point)
			seen_point = true;
		else
			break;
	}
	if (!any)
		shim_invalid_syntax("numeric", str);
	if (*p == 'e' || *p == 'E')
	{
		int64		exponent = 0;
		bool		eneg = false;

		p++;
		if (*p == '-' || *p == '+')
			eneg = (*p++ == '-');
		if (!isdigit((unsigned char) *p))
			shim_invalid_syntax("numeric", str);
		while (isdigit((unsigned char) *p))
		{
			exponent = exponent * 10 + (*p++ - '0');
			if (exponent > 1000)	/* NUMERIC_MAX_PRECISION */
				shim_invalid_syntax("numeric", str);
		}
		dweight += eneg ? -exponent : exponent;
	}
	while (*p && isspace((unsigned char) *p))
		p++;
	if (*p != '\0')
		shim_invalid_syntax("numeric", str);

	if (typmod < (int32) VARHDRSZ)
	{
		/* no typmod: keep the text */
		PG_RETURN_TEXT_P(cstring_to_text(str));
	}
	precision = ((typmod - VARHDRSZ) >> 16) & 0xffff;
	scale = (typmod - VARHDRSZ) & 0x7ff;

	/* round half away from zero at scale digits after the point */
	round_at = dweight + scale;
	if (round_at < 0)
		ndigits = 0;
	else if (round_at < ndigits)
	{
		bool		up = digits[round_at] >= 5;

		ndigits = (int) round_at;
		for (i = ndigits - 1; up && i >= 0; i--)
		{
			if (++digits[i] == 10)
				digits[i] = 0;
			else
				up = false;
		}
		if (up)
		{
			memmove(digits + 1, digits, ndigits);
			digits[0] = 1;
			ndigits++;
			dweight++;
		}
	}
	while (ndigits > 0 && digits[ndigits - 1] == 0)
		ndigits--;
	if (ndigits == 0)
		dweight = 0;
	if (dweight > precision - scale)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("numeric field overflow"),
				 errdetail("A field with precision %d, scale %d must round to an absolute value less than %s%d.",
						   precision, scale,
						   precision - scale == 0 ? "" : "10^",
						   precision - scale == 0 ? 1 : precision - scale)));

	initStringInfo(&out);
	if (neg && ndigits > 0)
		appendStringInfoChar(&out, '-');
	if (dweight <= 0)
		appendStringInfoChar(&out, '0');
	for (i = 0; i < dweight; i++)
		appendStringInfoChar(&out, (char) ('0' + (i < ndigits ? digits[i] : 0)));
	if (scale > 0)
	{
		appendStringInfoChar(&out, '.');
		for (i = 0; i < scale; i++)
		{
			int64		pos = dweight + i;

			appendStringInfoChar(&out, (char) ('0' + (pos >= 0 && pos < ndigits ? digits[pos] : 0)));
		}
	}
	pfree(digits);
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}


/* ---------- boolean (parse_bool_with_len) ---------- */

Datum
boolin(PG_FUNCTION_ARGS)
{
	const char *in_str = PG_GETARG_CSTRING(0);
	const char *str = in_str;
	size_t		len;
	int			result = -1;

	while (isspace((unsigned char) *str))
		str++;
	len = strlen(str);
	while (len > 0 && isspace((unsigned char) str[len - 1]))
		len--;

	switch (len > 0 ? *str : '\0')
	{
		case 't':
		case 'T':
			if (pg_strncasecmp(str, "true", len) == 0 && len <= 4)
				result = 1;
			break;
		case 'f':
		case 'F':
			if (pg_strncasecmp(str, "false", len) == 0 && len <= 5)
				result = 0;
			break;
		case 'y':
		case 'Y':
			if (pg_strncasecmp(str, "yes", len) == 0 && len <= 3)
				result = 1;
			break;
		case 'n':
		case 'N':
			if (pg_strncasecmp(str, "no", len) == 0 && len <= 2)
				result = 0;
			break;
		case 'o':
		case 'O':
			if (len >= 2 && len <= 2 && pg_strncasecmp(str, "on", 2) == 0)
				result = 1;
			else if (len >= 2 && len <= 3 && pg_strncasecmp(str, "off", len) == 0)
				result = 0;
			break;
		case '1':
			if (len == 1)
				result = 1;
			break;
		case '0':
			if (len == 1)
				result = 0;
			break;
	}
	if (result < 0)
		shim_invalid_syntax("boolean", in_str);
	PG_RETURN_BOOL(result == 1);
}


/* ---------- date, time, timestamptz (an ISO 8601 subset of DecodeDateTime) ---------- */

typedef struct ShimDateTime
{
	int			special;		/* 0, or +1 infinity, -1 -infinity, 2 epoch */
	bool		has_date;
	int64		year;
	int			mon;
	int			mday;
	bool		has_time;
	int			hour;
	int			min;
	int			sec;
	int64		usec;
	bool		has_tz;
	int			tzoff;			/* seconds east of UTC */
} ShimDateTime;

/* date2j of PostgreSQL (int64 so that no year of the grammar overflows) */
static int64
shim_date2j(int64 year, int month, int day)
{
	int64		julian;
	int64		century;

	if (month > 2)
	{
		month += 1;
		year += 4800;
	}
	else
	{
		month += 13;
		year += 4799;
	}
	century = year / 100;
	julian = year * 365 - 32167;
	julian += year / 4 - century + century / 4;
	julian += 7834 * month / 256 + day;
	return julian;
}

static int
shim_digits(const char **p, int maxdigits, int64 *value)
{
	int			n = 0;

	*value = 0;
	while (n < maxdigits && isdigit((unsigned char) **p))
	{
		*value = *value * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n;
}

/* Parse a zone: Z, UTC, GMT, +HH, +HH:MM, +HHMM, +HH:MM:SS.  false if none. */
static bool
shim_parse_zone(const char **pp, ShimDateTime *dt, const char *str, const char *type)
{
	const char *p = *pp;
	int64		h,
				m = 0,
				s = 0;
	int			sign;

	if (*p == 'Z' || *p == 'z')
	{
		*pp = p + 1;
		dt->has_tz = true;
		dt->tzoff = 0;
		return true;
	}
	if (pg_strncasecmp(p, "UTC", 3) == 0 || pg_strncasecmp(p, "GMT", 3) == 0)
	{
		*pp = p + 3;
		dt->has_tz = true;
		dt->tzoff = 0;
		return true;
	}
	if (*p != '+' && *p != '-')
		return false;
	sign = (*p == '-') ? -1 : 1;
	p++;
	if (shim_digits(&p, 2, &h) == 0)
		shim_invalid_syntax(type, str);
	if (*p == ':')
	{
		p++;
		if (shim_digits(&p, 2, &m) != 2)
			shim_invalid_syntax(type, str);
		if (*p == ':')
		{
			p++;
			if (shim_digits(&p, 2, &s) != 2)
				shim_invalid_syntax(type, str);
		}
	}
	else if (isdigit((unsigned char) *p))
	{
		if (shim_digits(&p, 2, &m) != 2)
			shim_invalid_syntax(type, str);
	}
	if (h > 15 || m >= 60 || s >= 60)	/* MAX_TZDISP_HOUR */
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TIME_ZONE_DISPLACEMENT_VALUE),
				 errmsg("time zone displacement out of range: \"%s\"", str)));
	dt->has_tz = true;
	dt->tzoff = sign * (int) (h * 3600 + m * 60 + s);
	*pp = p;
	return true;
}

static void
shim_parse_datetime(const char *str, ShimDateTime *dt, const char *type)
{
	const char *p = str;

	memset(dt, 0, sizeof(*dt));
	while (isspace((unsigned char) *p))
		p++;

	if (pg_strncasecmp(p, "infinity", 8) == 0 || pg_strncasecmp(p, "+infinity", 9) == 0)
	{
		dt->special = 1;
		p += (*p == '+') ? 9 : 8;
	}
	else if (pg_strncasecmp(p, "-infinity", 9) == 0)
	{
		dt->special = -1;
		p += 9;
	}
	else if (pg_strncasecmp(p, "epoch", 5) == 0)
	{
		dt->special = 2;
		p += 5;
	}
	if (dt->special != 0)
	{
		/* a reserved word takes no other field (DecodeDateTime's tmask) */
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '\0')
			shim_invalid_syntax(type, str);
		return;
	}

	/* date: Y{1,7}-M{1,2}-D{1,2} */
	if (isdigit((unsigned char) *p))
	{
		const char *save = p;
		int64		y,
					m,
					d;
		int			ny = shim_digits(&p, 8, &y);

		if (*p == '-' && ny >= 4)
		{
			p++;
			if (shim_digits(&p, 2, &m) == 0 || *p != '-')
				shim_invalid_syntax(type, str);
			p++;
			if (shim_digits(&p, 2, &d) == 0)
				shim_invalid_syntax(type, str);
			if (ny > 7)
				shim_invalid_syntax(type, str);
			dt->has_date = true;
			dt->year = y;
			dt->mon = (int) m;
			dt->mday = (int) d;
			if (*p == 'T' || *p == 't')
			{
				p++;
				if (!isdigit((unsigned char) *p))
					shim_invalid_syntax(type, str);
			}
			else if (isspace((unsigned char) *p))
			{
				while (isspace((unsigned char) *p))
					p++;
			}
			else if (*p != '\0' && *p != '+' && *p != '-' && *p != 'Z' && *p != 'z')
				shim_invalid_syntax(type, str);
		}
		else
			p = save;
	}

	/* time: H{1,2}:MM[:SS[.F+]] */
	if (isdigit((unsigned char) *p))
	{
		int64		h,
					mi,
					s = 0;

		if (shim_digits(&p, 2, &h) == 0 || *p != ':')
			shim_invalid_syntax(type, str);
		p++;
		if (shim_digits(&p, 2, &mi) != 2)
			shim_invalid_syntax(type, str);
		if (*p == ':')
		{
			p++;
			if (shim_digits(&p, 2, &s) != 2)
				shim_invalid_syntax(type, str);
			if (*p == '.')
			{
				int64		scale = 100000;
				int			nfrac = 0;

				p++;
				while (isdigit((unsigned char) *p))
				{
					if (nfrac < 6)
						dt->usec += (*p - '0') * scale;
					else if (nfrac == 6 && *p >= '5')
						dt->usec++;	/* round at microseconds */
					scale /= 10;
					nfrac++;
					p++;
				}
				if (nfrac == 0)
					shim_invalid_syntax(type, str);
			}
		}
		dt->has_time = true;
		dt->hour = (int) h;
		dt->min = (int) mi;
		dt->sec = (int) s;
	}

	while (isspace((unsigned char) *p))
		p++;
	if (*p != '\0' && (dt->has_date || dt->has_time))
		shim_parse_zone(&p, dt, str, type);
	while (isspace((unsigned char) *p))
		p++;
	if (*p != '\0' || (!dt->has_date && !dt->has_time))
		shim_invalid_syntax(type, str);

	/* field ranges (ValidateDate, DecodeTime) */
	if (dt->has_date)
	{
		static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
		bool		leap = (dt->year % 4 == 0 && (dt->year % 100 != 0 || dt->year % 400 == 0));

		if (dt->year < 1 || dt->mon < 1 || dt->mon > 12 || dt->mday < 1 ||
			dt->mday > mdays[dt->mon - 1] + ((dt->mon == 2 && leap) ? 1 : 0))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
					 errmsg("date/time field value out of range: \"%s\"", str)));
	}
	if (dt->has_time)
	{
		if (dt->hour > 24 || dt->min > 59 || dt->sec > 60 ||
			(dt->hour == 24 && (dt->min > 0 || dt->sec > 0 || dt->usec > 0)))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
					 errmsg("date/time field value out of range: \"%s\"", str)));
	}
}

static int64
shim_time_usec(const ShimDateTime *dt)
{
	return (((int64) dt->hour * 60 + dt->min) * 60 + dt->sec) * USECS_PER_SEC + dt->usec;
}

Datum
date_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	ShimDateTime dt;
	int64		j;

	shim_parse_datetime(str, &dt, "date");
	if (dt.special == 1)
		PG_RETURN_DATEADT(DATEVAL_NOEND);
	if (dt.special == -1)
		PG_RETURN_DATEADT(DATEVAL_NOBEGIN);
	if (dt.special == 2)
		PG_RETURN_DATEADT(shim_date2j(1970, 1, 1) - POSTGRES_EPOCH_JDATE);
	if (!dt.has_date)
		shim_invalid_syntax("date", str);
	j = shim_date2j(dt.year, dt.mon, dt.mday);
	if (j < DATETIME_MIN_JULIAN || j >= DATE_END_JULIAN)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("date out of range: \"%s\"", str)));
	PG_RETURN_DATEADT((DateADT) (j - POSTGRES_EPOCH_JDATE));
}

Datum
time_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	ShimDateTime dt;

	shim_parse_datetime(str, &dt, "time without time zone");
	if (dt.special != 0 || !dt.has_time)
		shim_invalid_syntax("time without time zone", str);
	/* stricter than PostgreSQL, which lets 23:59:60.5 through */
	if (shim_time_usec(&dt) > USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("date/time field value out of range: \"%s\"", str)));
	PG_RETURN_TIMEADT(shim_time_usec(&dt));
}

Datum
timestamptz_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	ShimDateTime dt;
	int64		j;
	TimestampTz ts;

	shim_parse_datetime(str, &dt, "timestamp with time zone");
	if (dt.special == 1)
		PG_RETURN_TIMESTAMPTZ(DT_NOEND);
	if (dt.special == -1)
		PG_RETURN_TIMESTAMPTZ(DT_NOBEGIN);
	if (dt.special == 2)
		PG_RETURN_TIMESTAMPTZ(-(TimestampTz) 946684800 * USECS_PER_SEC);
	if (!dt.has_date)
		shim_invalid_syntax("timestamp with time zone", str);
	/* the session TimeZone is UTC */
	j = shim_date2j(dt.year, dt.mon, dt.mday);
	if (j < DATETIME_MIN_JULIAN || j >= TIMESTAMP_END_JULIAN)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range: \"%s\"", str)));
	ts = (j - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
	if (dt.has_time)
		ts += shim_time_usec(&dt);
	ts -= (int64) dt.tzoff * USECS_PER_SEC;
	if (!IS_VALID_TIMESTAMP(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range: \"%s\"", str)));
	PG_RETURN_TIMESTAMPTZ(ts);
}

/* timestamptz_date with the session TimeZone UTC */
Datum
timestamptz_date(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int64		days;

	if (TIMESTAMP_IS_NOBEGIN(ts))
		PG_RETURN_DATEADT(DATEVAL_NOBEGIN);
	if (TIMESTAMP_IS_NOEND(ts))
		PG_RETURN_DATEADT(DATEVAL_NOEND);
	days = ts / USECS_PER_DAY;
	if (ts < 0 && ts % USECS_PER_DAY != 0)
		days--;
	PG_RETURN_DATEADT((DateADT) days);
}


/* ---------- varchar(n), char(n) (varchar_input, bpchar_input) ---------- */

/* Bytes of the first limit characters of s (pg_mbcharcliplen). */
static int
shim_charclip(const char *s, int len, int limit)
{
	int			clen = 0;
	int			nch = 0;

	while (len > 0 && *s && nch < limit)
	{
		int			l = pg_encoding_mblen(GetDatabaseEncoding(), s);

		if (l > len)
			break;
		clen += l;
		len -= l;
		s += l;
		nch++;
	}
	return clen;
}

static int
shim_charlen(const char *s, int len)
{
	int			nch = 0;

	while (len > 0 && *s)
	{
		int			l = pg_encoding_mblen(GetDatabaseEncoding(), s);

		s += l;
		len -= l;
		nch++;
	}
	return nch;
}

Datum
varcharin(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	int32		atttypmod = PG_GETARG_INT32(2);
	int			len = strlen(s);

	if (atttypmod >= (int32) VARHDRSZ)
	{
		int			maxlen = atttypmod - VARHDRSZ;

		if (len > maxlen)
		{
			int			mbmaxlen = shim_charclip(s, len, maxlen);
			int			j;

			for (j = mbmaxlen; j < len; j++)
			{
				if (s[j] != ' ')
					ereport(ERROR,
							(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
							 errmsg("value too long for type character varying(%d)",
									maxlen)));
			}
			len = mbmaxlen;
		}
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(s, len));
}

Datum
bpcharin(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	int32		atttypmod = PG_GETARG_INT32(2);
	int			len = strlen(s);
	int			maxlen;
	int			charlen;
	StringInfoData buf;

	if (atttypmod < (int32) VARHDRSZ)
		PG_RETURN_TEXT_P(cstring_to_text_with_len(s, len));
	maxlen = atttypmod - VARHDRSZ;
	charlen = shim_charlen(s, len);
	if (charlen > maxlen)
	{
		int			mbmaxlen = shim_charclip(s, len, maxlen);
		int			j;

		for (j = mbmaxlen; j < len; j++)
		{
			if (s[j] != ' ')
				ereport(ERROR,
						(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
						 errmsg("value too long for type character(%d)", maxlen)));
		}
		PG_RETURN_TEXT_P(cstring_to_text_with_len(s, mbmaxlen));
	}
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, s, len);
	for (; charlen < maxlen; charlen++)
		appendStringInfoChar(&buf, ' ');
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}


/* ---------- text (json_datum.c builds text itself; for fmgr_info) ---------- */

Datum
textin(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(PG_GETARG_CSTRING(0)));
}


/* ---------- json, jsonb: validity by jansson ---------- */

/* Any string in the tree holding a NUL (jsonb refuses \u0000). */
static bool
shim_json_has_nul(json_t *v, int depth)
{
	const char *key;
	json_t	   *m;
	size_t		i;

	check_stack_depth();
	switch (json_typeof(v))
	{
		case JSON_STRING:
			return memchr(json_string_value(v), '\0', json_string_length(v)) != NULL;
		case JSON_OBJECT:
			json_object_foreach(v, key, m)
			{
				if (shim_json_has_nul(m, depth + 1))
					return true;
			}
			return false;
		case JSON_ARRAY:
			json_array_foreach(v, i, m)
			{
				if (shim_json_has_nul(m, depth + 1))
					return true;
			}
			return false;
		default:
			return false;
	}
}

/* Latin-1 text (the database encoding) back to UTF-8 for jansson. */
static char *
shim_latin1_to_utf8(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c < 0x80)
			appendStringInfoChar(&buf, (char) c);
		else
		{
			appendStringInfoChar(&buf, (char) (0xC0 | (c >> 6)));
			appendStringInfoChar(&buf, (char) (0x80 | (c & 0x3F)));
		}
	}
	return buf.data;
}

static Datum
shim_json_input(const char *str, bool binary)
{
	const char *utf8 = str;
	json_error_t err;
	json_t	   *doc;
	bool		nul;

	if (GetDatabaseEncoding() == PG_LATIN1)
		utf8 = shim_latin1_to_utf8(str);
	doc = json_loadb(utf8, strlen(utf8), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s", binary ? "jsonb" : "json"),
				 errdetail("The input is not valid JSON.")));
	nul = binary && shim_json_has_nul(doc, 0);
	json_decref(doc);
	if (nul)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("unsupported Unicode escape sequence"),
				 errdetail("\\u0000 cannot be converted to text.")));
	return PointerGetDatum(cstring_to_text(str));
}

Datum
json_in(PG_FUNCTION_ARGS)
{
	return shim_json_input(PG_GETARG_CSTRING(0), false);
}

Datum
jsonb_in(PG_FUNCTION_ARGS)
{
	return shim_json_input(PG_GETARG_CSTRING(0), true);
}


/* ---------- the three domains (domain_in, domain_check) ---------- */

/* The CHECK constraint of a domain (domain_check_input). */
static void
shim_domain_check_value(Oid domain, Datum value)
{
	switch (domain)
	{
		case SHIM_POSINT_OID:
			if (DatumGetInt32(value) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("value for domain posint violates check constraint \"posint_check\"")));
			return;
		case SHIM_DAY_OID:
			/* 2000-01-01 is day 0; -infinity is below it, infinity above */
			if (DatumGetDateADT(value) < 0)
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("value for domain day2k violates check constraint \"day2k_check\"")));
			return;
		case SHIM_FLAG_OID:
			return;
	}
	elog(ERROR, "type %u is not a domain", domain);
}

void
domain_check(Datum value, bool isnull, Oid domainType, void **extra,
			 MemoryContext mcxt)
{
	if (!isnull)
		shim_domain_check_value(domainType, value);
}

Datum
domain_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_ARGISNULL(0) ? NULL : PG_GETARG_CSTRING(0);
	Oid			domain = PG_GETARG_OID(1);
	LOCAL_FCINFO(base, 3);
	Datum		value;

	if (str == NULL)
		PG_RETURN_NULL();	/* NOT NULL is not checked on input */
	InitFunctionCallInfoData(*base, NULL, 3, InvalidOid, NULL, NULL);
	base->args[0].value = CStringGetDatum(str);
	base->args[0].isnull = false;
	base->args[1].value = ObjectIdGetDatum(getBaseType(domain));
	base->args[1].isnull = false;
	base->args[2].value = Int32GetDatum(-1);
	base->args[2].isnull = false;

	switch (domain)
	{
		case SHIM_POSINT_OID:
			value = int4in(base);
			break;
		case SHIM_FLAG_OID:
			value = boolin(base);
			break;
		case SHIM_DAY_OID:
			value = date_in(base);
			break;
		default:
			elog(ERROR, "type %u is not a domain", domain);
			return (Datum) 0;
	}
	shim_domain_check_value(domain, value);
	return value;
}


/* ---------- catalog stand-ins ---------- */

PGFunction
shim_type_input(Oid fnoid)
{
	switch (fnoid)
	{
		case F_INT2IN:
			return int2in;
		case F_INT4IN:
			return int4in;
		case F_INT8IN:
			return int8in;
		case F_FLOAT8IN:
			return float8in;
		case F_NUMERIC_IN:
			return numeric_in;
		case F_BOOLIN:
			return boolin;
		case F_DATE_IN:
			return date_in;
		case F_TIME_IN:
			return time_in;
		case F_TIMESTAMPTZ_IN:
			return timestamptz_in;
		case F_VARCHARIN:
			return varcharin;
		case F_BPCHARIN:
			return bpcharin;
		case F_JSON_IN:
			return json_in;
		case F_JSONB_IN:
			return jsonb_in;
		case F_DOMAIN_IN:
			return domain_in;
		case F_TEXTIN:
			return textin;
	}
	return NULL;
}

Oid
shim_type_input_oid(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return F_INT2IN;
		case INT4OID:
			return F_INT4IN;
		case INT8OID:
			return F_INT8IN;
		case FLOAT8OID:
			return F_FLOAT8IN;
		case NUMERICOID:
			return F_NUMERIC_IN;
		case BOOLOID:
			return F_BOOLIN;
		case DATEOID:
			return F_DATE_IN;
		case TIMEOID:
			return F_TIME_IN;
		case TIMESTAMPTZOID:
			return F_TIMESTAMPTZ_IN;
		case VARCHAROID:
			return F_VARCHARIN;
		case BPCHAROID:
			return F_BPCHARIN;
		case JSONOID:
			return F_JSON_IN;
		case JSONBOID:
			return F_JSONB_IN;
		case TEXTOID:
			return F_TEXTIN;
		case SHIM_POSINT_OID:
		case SHIM_FLAG_OID:
		case SHIM_DAY_OID:
			return F_DOMAIN_IN;
	}
	shim_fail("no input function for type %u", typid);
}

void
getTypeInputInfo(Oid type, Oid *typInput, Oid *typIOParam)
{
	*typInput = shim_type_input_oid(type);
	*typIOParam = type;
}

Oid
getBaseType(Oid typid)
{
	switch (typid)
	{
		case SHIM_POSINT_OID:
			return INT4OID;
		case SHIM_FLAG_OID:
			return BOOLOID;
		case SHIM_DAY_OID:
			return DATEOID;
	}
	return typid;
}

char *
format_type_be(Oid type_oid)
{
	const char *name;

	switch (type_oid)
	{
		case INT2OID: name = "smallint"; break;
		case INT4OID: name = "integer"; break;
		case INT8OID: name = "bigint"; break;
		case FLOAT8OID: name = "double precision"; break;
		case NUMERICOID: name = "numeric"; break;
		case BOOLOID: name = "boolean"; break;
		case DATEOID: name = "date"; break;
		case TIMEOID: name = "time without time zone"; break;
		case TIMESTAMPTZOID: name = "timestamp with time zone"; break;
		case VARCHAROID: name = "character varying"; break;
		case BPCHAROID: name = "character"; break;
		case JSONOID: name = "json"; break;
		case JSONBOID: name = "jsonb"; break;
		case TEXTOID: name = "text"; break;
		case SHIM_POSINT_OID: name = "posint"; break;
		case SHIM_FLAG_OID: name = "flag"; break;
		default: name = "???"; break;
	}
	return pstrdup(name);
}
