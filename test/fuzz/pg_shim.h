/*-------------------------------------------------------------------------
 *
 * pg_shim.h
 *		  What the fuzz harnesses need from pg_shim.c and pg_types.c: a
 *		  stand-in for the parts of the PostgreSQL backend that
 *		  src/json_datum.c calls, so that file can be compiled unmodified
 *		  into a libFuzzer binary.  See README.md for what is (not) modelled.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CRM_PG_SHIM_H
#define CRM_PG_SHIM_H

#include "postgres.h"

#include "crm_fdw.h"

#include <setjmp.h>

/* Fake OIDs of the two domains of the column set (>= FirstNormalObjectId). */
#define SHIM_POSINT_OID	70001		/* CREATE DOMAIN posint AS integer CHECK (VALUE > 0) */
#define SHIM_FLAG_OID	70002		/* CREATE DOMAIN flag AS boolean CHECK (VALUE IS NOT NULL) */
#define SHIM_DAY_OID	70003		/* CREATE DOMAIN day2k AS date CHECK (VALUE >= '2000-01-01') */

/* The last ERROR that reached the harness. */
typedef struct ShimError
{
	int			elevel;
	int			sqlerrcode;
	const char *filename;		/* where it was raised */
	int			lineno;
	const char *funcname;
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *context;		/* from the error context callbacks */
} ShimError;

extern ShimError shim_error;
extern sigjmp_buf *shim_exception_stack;

/* Counters, printed at exit when FUZZ_VERBOSE is set. */
extern long shim_calls;
extern long shim_rejections;

/*
 * Run stmt; if it raises ERROR, come back here, restore the error context
 * stack (as PG_CATCH does) and run on_error.  Like PG_TRY, a local variable
 * changed inside stmt and read after an error must be volatile.
 */
#define SHIM_TRY(stmt, on_error) \
	do { \
		sigjmp_buf *shim_save_stack_ = shim_exception_stack; \
		ErrorContextCallback *shim_save_ctx_ = error_context_stack; \
		sigjmp_buf	shim_jb_; \
		shim_calls++; \
		if (sigsetjmp(shim_jb_, 0) == 0) \
		{ \
			shim_exception_stack = &shim_jb_; \
			stmt; \
			shim_exception_stack = shim_save_stack_; \
			shim_check_context_stack(shim_save_ctx_, __LINE__); \
		} \
		else \
		{ \
			shim_exception_stack = shim_save_stack_; \
			error_context_stack = shim_save_ctx_; \
			shim_rejections++; \
			shim_report_error(); \
			on_error; \
		} \
	} while (0)

/* Set up the shim once: contexts, stack base, FUZZ_VERBOSE. */
extern void shim_init(void);
/* Start one input under the given database encoding (PG_UTF8, PG_LATIN1, PG_SQL_ASCII). */
extern void shim_begin_input(int db_encoding, bool interrupts);
/* Reset the per-input context (runs the reset callbacks, frees every chunk). */
extern void shim_end_input(void);
/* The context that outlives inputs (columns). */
extern MemoryContext shim_top_context;
/* After a successful call: error_context_stack must be back where it was. */
extern void shim_check_context_stack(ErrorContextCallback *expected, int line);
/* With FUZZ_VERBOSE, print shim_error. */
extern void shim_report_error(void);
extern bool shim_verbose;
/* abort() with a message: an invariant of json_datum.c's contract failed. */
extern void shim_fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

/* pg_types.c: catalog stand-ins for the column set. */
extern PGFunction shim_type_input(Oid fnoid);
extern Oid	shim_type_input_oid(Oid typid);

/* columns.c: the fixed column set, built through crmInitColumn. */
extern CrmColumn *shim_columns;
extern int	shim_ncolumns;
extern void shim_init_columns(void);
/*
 * Check a converted value for what the backend relies on: a varlena the
 * right size, valid in the database encoding and without NUL, a varchar(n)
 * at most n characters, a date or timestamp in range.
 */
extern void shim_check_datum(CrmColumn *col, Datum value, bool isnull);

#endif							/* CRM_PG_SHIM_H */
