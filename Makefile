# crm_fdw: PGXS build.  `make PG_CONFIG=/path/to/pg_config` picks another server.
EXTENSION   = crm_fdw
EXTVERSION  = 0.1.0
MODULE_big  = crm_fdw
OBJS        = src/fdw.o src/options.o src/pushdown.o src/http.o src/json_datum.o src/json_skim.o src/import.o src/sync.o src/fetcher.o src/worker.o
DATA        = sql/crm_fdw--$(EXTVERSION).sql
PGFILEDESC  = "crm_fdw - foreign data wrapper and sync for a remote appointments API"

# pg_regress scripts in sql/, expected output in expected/; test/run-tests
# starts the mock API and passes its URL in CRM_MOCK_URL.
REGRESS      = setup options import pushdown scan errors sync
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -Isrc $(shell pkg-config --cflags libcurl jansson 2>/dev/null)
SHLIB_LINK  = $(shell pkg-config --libs libcurl jansson 2>/dev/null || echo -lcurl -ljansson)
# Warnings are errors in CI builds (make WERROR=1).
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
ifdef WERROR
PG_CFLAGS  += -Werror
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/crm_fdw.h

# ---------- fuzzing and sanitizers (test/fuzz, test/sanitize) ----------
# Not part of the extension's build; see test/fuzz/README.md and
# test/sanitize/README.md.
#   make fuzz                      build the libFuzzer harnesses (clang)
#   make fuzz-run FUZZ_SECONDS=60  replay the seeds, check the hostile ones, fuzz
#   make sanitize-check            pg_regress under ASan+UBSan, private install
FUZZ_SECONDS ?= 60
.PHONY: fuzz fuzz-run fuzz-clean sanitize-check
fuzz:
	$(MAKE) -C test/fuzz PG_CONFIG=$(PG_CONFIG)
fuzz-run:
	PG_CONFIG=$(PG_CONFIG) test/fuzz/run $(FUZZ_SECONDS)
fuzz-clean:
	$(MAKE) -C test/fuzz clean
sanitize-check:
	PG_CONFIG=$(PG_CONFIG) test/sanitize/run
