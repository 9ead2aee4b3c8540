/*
 * jansson_limit: the parsing limit of a JSON-reading foreign scan.
 *
 *   jansson_limit FILE...
 *
 * Parses each file (one API page) with json_loadb as crm_fdw does, three
 * times over, and prints the best wall time of one pass over all files in
 * seconds.  Allocation is a bump allocator reset per page, cheaper than any
 * real allocator, so the figure bounds from above what a scan that parses
 * every page with jansson can reach on one core.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *arena;
static size_t arena_size;
static size_t arena_used;

static void *
bump_alloc(size_t size)
{
	void	   *p;

	size = (size + 15) & ~(size_t) 15;
	if (arena_used + size > arena_size)
		return NULL;
	p = arena + arena_used;
	arena_used += size;
	return p;
}

static void
bump_free(void *ptr)
{
	(void) ptr;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	char	  **bodies = calloc(argc, sizeof(char *));
	size_t	   *lens = calloc(argc, sizeof(size_t));
	double		best = -1;
	int			pass;
	int			i;

	for (i = 1; i < argc; i++)
	{
		FILE	   *f = fopen(argv[i], "rb");
		long		n;

		if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0)
		{
			fprintf(stderr, "jansson_limit: cannot read %s\n", argv[i]);
			return 1;
		}
		rewind(f);
		bodies[i] = malloc(n + 1);
		lens[i] = fread(bodies[i], 1, n, f);
		fclose(f);
		/* a page's document takes some times its text */
		if ((size_t) n * 16 > arena_size)
			arena_size = (size_t) n * 16;
	}
	arena = malloc(arena_size);
	if (arena == NULL)
		return 1;
	json_set_alloc_funcs(bump_alloc, bump_free);

	for (pass = 0; pass < 3; pass++)
	{
		double		t0 = now();
		double		t;

		for (i = 1; i < argc; i++)
		{
			json_error_t err;
			json_t	   *root;

			arena_used = 0;
			root = json_loadb(bodies[i], lens[i], JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
			if (root == NULL)
			{
				fprintf(stderr, "jansson_limit: %s: %s\n", argv[i], err.text);
				return 1;
			}
			json_decref(root);
		}
		t = now() - t0;
		if (best < 0 || t < best)
			best = t;
	}
	printf("%.6f\n", best);
	return 0;
}
