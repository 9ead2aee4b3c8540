#!/usr/bin/python3
"""Runner of crm_fdw's integration tests (a tiny harness; no pytest here).

    /usr/bin/python3 test/integration/run.py [-k substring] [-x]

Imports test/integration/test_*.py in name order and runs each function whose
name starts with "test_", in the order the module defines them.  A test
passes when it returns, fails on any exception, and is skipped (not counted)
when it raises helpers.Skip.  After every test the default mock is reset
(data, switches, log); after a module's last test its database is dropped.

Prints one line per test and ends with exactly
    integration: N passed, M failed
The exit status is 0 only if M == 0 and N > 0.

Expects the cluster and the default mock to be running (test/run-tests starts
them) and their addresses in the environment (see helpers.py).
"""

import argparse
import importlib
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import helpers  # noqa: E402


def discover():
    """[(module name, module or None, [(name, function), ...]), ...] in a
    stable order; a module that cannot be imported comes with None."""
    found = []
    for filename in sorted(os.listdir(HERE)):
        if not (filename.startswith("test_") and filename.endswith(".py")):
            continue
        try:
            module = importlib.import_module(filename[:-3])
        except Exception:
            found.append((filename[:-3], None, traceback.format_exc()))
            continue
        tests = [(name, fn) for name, fn in vars(module).items()
                 if name.startswith("test_") and inspect.isfunction(fn)]
        found.append((filename[:-3], module, tests))
    return found


def reset_default_mock():
    try:
        helpers.mock().reset()
    except Exception as e:                  # reported, but never hides a result
        print("warning: could not reset the mock: %s" % e, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", dest="pattern", default="",
                    help="run only tests whose module or name contains this")
    ap.add_argument("-x", dest="exitfirst", action="store_true",
                    help="stop after the first failure")
    args = ap.parse_args()

    passed = failed = skipped = 0
    started = time.monotonic()
    stop = False
    reset_default_mock()                    # whatever ran before (pg_regress) left
    for module_name, module, tests in discover():
        if module is None:
            if args.pattern in module_name:
                failed += 1
                print("FAIL %s: cannot import\n%s" % (module_name, tests), flush=True)
            continue
        selected = [(n, f) for n, f in tests
                    if args.pattern in n or args.pattern in module_name]
        if not selected:
            continue
        for name, fn in selected:
            t0 = time.monotonic()
            try:
                fn()
            except helpers.Skip as e:
                skipped += 1
                print("skip %s: %s" % (name, e), flush=True)
            except Exception as e:
                failed += 1
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                print("FAIL %s: %s (%.1fs)" % (name, reason, time.monotonic() - t0), flush=True)
                traceback.print_exc(file=sys.stdout)
                sys.stdout.flush()
                stop = args.exitfirst
            else:
                passed += 1
                print("ok   %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
            finally:
                reset_default_mock()
            if stop:
                break
        try:
            helpers.drop_module_db(module.__name__)
        except Exception as e:
            print("warning: could not drop the database of %s: %s" % (module_name, e))
        if stop:
            break

    print("(%d skipped, %.0fs)" % (skipped, time.monotonic() - started))
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
