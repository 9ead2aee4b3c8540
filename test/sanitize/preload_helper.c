/*
 * preload_helper.c: preloaded after the ASan runtime when the uninstrumented
 * postgres runs with LD_PRELOAD=libasan.so (test/sanitize/run).  Built with
 * plain gcc, no sanitizer; only that test loads it.  Two fixes:
 *
 * 1. The ASan runtime initializes itself lazily, at the first malloc, when it
 *    is preloaded into a program that is not instrumented.  In postgres on
 *    Debian 12 that first malloc comes from the constructor of libgpg-error
 *    (through libgcrypt), inside bindtextdomain(), while glibc holds its
 *    gettext lock (_nl_state_lock) for writing; ASan's initialization calls
 *    dlsym()/dlerror(), which takes the same lock for reading and corrupts
 *    it, and postgres hangs in its own bindtextdomain() (at `postgres -V`).
 *    Interposing bindtextdomain makes that first malloc happen before glibc
 *    takes the lock.
 *
 * 2. Programs that postgres executes (COPY ... FROM PROGRAM 'curl ... | jq',
 *    used by the regression tests to drive the mock API) would inherit
 *    LD_PRELOAD and meet the same kind of hang under other glibc locks
 *    (curl: setlocale).  They are not ours to check: postgres drops
 *    LD_PRELOAD from its environment at start.  Its backends and workers are
 *    forked, not executed, so they keep the runtime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef char *(*bind_fn) (const char *, const char *);

/* A malloc the compiler may not drop: it initializes ASan if nothing did. */
static void
first_malloc(void)
{
	void	   *volatile p = malloc(1);

	free(p);
}

char *
bindtextdomain(const char *domainname, const char *dirname)
{
	static bind_fn real;

	first_malloc();
	if (real == NULL)
		real = (bind_fn) dlsym(RTLD_NEXT, "bindtextdomain");
	return real(domainname, dirname);
}

char *
bind_textdomain_codeset(const char *domainname, const char *codeset)
{
	static bind_fn real;

	first_malloc();
	if (real == NULL)
		real = (bind_fn) dlsym(RTLD_NEXT, "bind_textdomain_codeset");
	return real(domainname, codeset);
}

__attribute__((constructor))
static void
drop_preload_in_postgres(void)
{
	if (strcmp(program_invocation_short_name, "postgres") == 0)
		unsetenv("LD_PRELOAD");
}
