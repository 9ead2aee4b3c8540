/*
 * canary.c: proof that test/sanitize/run would see a bug.  Built with the
 * same sanitizer flags as crm_fdw and loaded into the same cluster after the
 * suite: san_canary(1) overflows a malloc'd buffer (AddressSanitizer),
 * san_canary(2) shifts past the width of int (UndefinedBehaviorSanitizer).
 * Each must end its backend and leave a report in the server log.
 */
#include "postgres.h"

#include <stdlib.h>

#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(san_canary);

Datum
san_canary(PG_FUNCTION_ARGS)
{
	int32		what = PG_GETARG_INT32(0);
	volatile int shift = 40 + what;
	int32		result = 0;

	if (what == 1)
	{
		char	   *volatile buf = malloc(8);

		buf[8 + what] = 'x';	/* heap-buffer-overflow */
		result = buf[0];
		free(buf);
	}
	else if (what == 2)
		result = 1 << shift;	/* shift exponent too large */
	PG_RETURN_INT32(result);
}
