"""Print the HTTP/1.1 conformance score: Http11Probe's cases against the real worker server.

    python benchmarks/conformance_score.py [--all]

Replays every case of ../shared/conformance/http11probe-cases.json (or
$ASYNCCLUSTER_CONFORMANCE) over 127.0.0.1 exactly as tests/test_conformance.py does, and
prints, per scored case, what came back next to the outcome the RFC prefers (the table and
its reasons live in that test). ``--all`` lists every case, not only the misses.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load_conformance() -> ModuleType:
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location("conformance", REPO / "tests" / "test_conformance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["conformance"] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list every case, not only the misses")
    args = parser.parse_args()
    conf = load_conformance()
    if not conf.CASES_FILE.exists():
        print(f"conformance cases not found at {conf.CASES_FILE}", file=sys.stderr)
        return 2
    cases = conf.load_cases()
    outcomes = asyncio.run(conf.run_cases(cases))
    preferred, total, missed = conf.score(cases, outcomes)
    outside = [case["id"] for case in cases if not conf.matches(outcomes[case["id"]], case["expected"])]
    uvicorn = sum(1 for case in cases if case["scored"] and case["uvicorn_verdict"] == "Pass")
    print(f"{'case':40} {'got':12} {'preferred':20} {'accepted':34} uvicorn")
    for case in cases:
        cid = case["id"]
        if not (args.all or cid in missed or cid in outside):
            continue
        mark = "OUTSIDE" if cid in outside else ("" if cid not in missed else "not preferred")
        print(
            f"{cid:40} {outcomes[cid].describe():12} {conf.PREFERRED[cid][0]:20} {case['expected']:34} "
            f"{case['uvicorn_got']} ({case['uvicorn_verdict']}) {mark}"
        )
        if cid in missed:
            print(f"{'':40} why preferred: {conf.PREFERRED[cid][1]}")
    print()
    print(f"preferred outcome: {preferred} of {total} scored cases (uvicorn: {uvicorn} 'Pass' of {total})")
    print(f"outside the accepted outcomes: {len(outside)} of {len(cases)} cases")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
