/*-------------------------------------------------------------------------
 *
 * fuzz_skim.c
 *		  libFuzzer harness: crmSkimPage (json_skim.c) against jansson.
 *
 * The skim may decline any text, but a page it reads must be one that
 * crmJsonParse and crmParsePage accept for both list resources, with the
 * same rows, pagination, and row keys (crmJsonRowKey).  A scan returning no
 * column then counts what a scan returning columns would return.
 *
 * FUZZ_EXPECT_SKIM=1 also fails when the skim declines: test/fuzz/run sets
 * it for the mock's own pages, so the fast path cannot silently go unused.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_shim.h"

#include <stdlib.h>

#include "mb/pg_wchar.h"

static const char *const path = "/appointments?per_page=100&page=1";
static bool expect_skim = false;

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	expect_skim = getenv("FUZZ_EXPECT_SKIM") != NULL;
	return 0;
}

static void
check_against_jansson(const uint8_t *data, size_t size, CrmResource resource,
					  CrmPage *skim)
{
	json_t	   *volatile root = NULL;
	CrmPage		page;
	volatile bool ok = false;
	size_t		i;

	SHIM_TRY(root = crmJsonParse((const char *) data, size, path), (void) 0);
	if (root == NULL)
		shim_fail("the skim read a text jansson refuses: %s", shim_error.message);
	SHIM_TRY(crmParsePage(root, resource, path, &page); ok = true, (void) 0);
	if (!ok)
		shim_fail("the skim read a page crmParsePage refuses (resource %d): %s",
				  (int) resource, shim_error.message);
	if (page.nrows != skim->nrows)
		shim_fail("rows: skim %zu, jansson %zu", skim->nrows, page.nrows);
	if (page.has_pagination != skim->has_pagination ||
		page.total != skim->total ||
		page.current_page != skim->current_page ||
		page.last_page != skim->last_page)
		shim_fail("pagination differs: skim %d %lld %lld %lld, jansson %d %lld %lld %lld",
				  skim->has_pagination, (long long) skim->total,
				  (long long) skim->current_page, (long long) skim->last_page,
				  page.has_pagination, (long long) page.total,
				  (long long) page.current_page, (long long) page.last_page);
	for (i = 0; i < page.nrows; i++)
	{
		CrmRowKey	key;

		crmJsonRowKey(json_array_get(page.rows, i), &key);
		if (key.has_id != skim->keys[i].has_id || key.id != skim->keys[i].id ||
			key.version != skim->keys[i].version)
			shim_fail("row %zu: skim key (%d, %lld, %u), jansson (%d, %lld, %u)", i,
					  skim->keys[i].has_id, (long long) skim->keys[i].id,
					  skim->keys[i].version, key.has_id, (long long) key.id,
					  key.version);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	CrmPage		skim;
	volatile bool skimmed = false;

	shim_begin_input(PG_UTF8, false);
	SHIM_TRY(skimmed = crmSkimPage((const char *) data, size, &skim),
			 shim_fail("crmSkimPage raised an error: %s", shim_error.message));
	if (skimmed)
	{
		if (skim.rows != NULL || (skim.nrows > 0 && skim.keys == NULL))
			shim_fail("the skim left rows, or no keys");
		check_against_jansson(data, size, CRM_RESOURCE_APPOINTMENTS, &skim);
		check_against_jansson(data, size, CRM_RESOURCE_RECENT, &skim);
	}
	else if (expect_skim)
		shim_fail("the skim declined a page it should read");
	shim_end_input();
	return 0;
}
