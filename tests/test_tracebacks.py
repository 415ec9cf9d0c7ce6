"""Error reports lead with the message and keep the last frames (issue 11 item 7)."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from asynccluster import exitcodes
from asynccluster.tracebacks import last_frames, summarise

REPO = Path(__file__).resolve().parents[1]


def raise_in_json() -> None:
    json.loads("{bad")


def test_summarise_puts_the_message_first_and_keeps_the_last_frames() -> None:
    try:
        raise_in_json()
    except ValueError:
        text = traceback.format_exc()
    summary = summarise("lifespan failed " + text, count=2)
    first, *frames = summary.splitlines()
    assert first.startswith("lifespan failed json.decoder.JSONDecodeError: Expecting property name")
    assert len(frames) == 2 and all(line.startswith("  at ") and "json" in line for line in frames)
    assert summarise("no traceback here\n") == "no traceback here"


def test_only_the_raised_traceback_of_a_chain_counts() -> None:
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("second") from None
    except RuntimeError:
        text = traceback.format_exc()
    assert summarise(text).splitlines()[0] == "RuntimeError: second"


def test_library_frames_alone_are_preceded_by_the_apps_own_frame() -> None:
    try:
        raise_in_json()
    except ValueError as exc:
        lines = last_frames(exc, count=2).splitlines()
    assert lines[0].startswith(f"  at {__file__}:") and "in raise_in_json" in lines[0]
    assert lines[1] == "  ..." and "json" in lines[2]


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_a_starlette_lifespan_failure_says_what_and_where() -> None:
    command = [sys.executable, "-m", "asynccluster", "run", "tests.apps.lifespan_traceback:app", "--port", "0"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == exitcodes.LIFESPAN, done.stderr
    lines = done.stderr.splitlines()
    index = next(i for i, line in enumerate(lines) if "] error: lifespan startup failed" in line)
    assert lines[index].endswith("error: lifespan startup failed: RuntimeError: database unreachable")
    assert any(
        "lifespan_traceback.py" in line and "in connect_database" in line for line in lines[index + 1 : index + 5]
    )
