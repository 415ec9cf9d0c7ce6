"""--reload's file rules and its compile check (issue 11 item 5), as pure logic."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("watchfiles")

from watchfiles import Change

from asynccluster.master.watch import PatternFilter, describe_changes, syntax_error


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    rules = PatternFilter(("*.py", "templates/*.html"), (".*", "~*", "tests/*"), [tmp_path])
    assert rules(Change.modified, str(tmp_path / "app.py"))
    assert rules(Change.added, str(tmp_path / "templates" / "page.html"))
    assert not rules(Change.modified, str(tmp_path / "notes.txt"))
    assert not rules(Change.modified, str(tmp_path / ".hidden.py"))
    assert not rules(Change.modified, str(tmp_path / "tests" / "test_app.py"))
    assert not rules(Change.modified, str(tmp_path / "__pycache__" / "app.py"))  # watchfiles' own defaults


def test_a_change_that_does_not_compile_is_found(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("x = 1\n")
    bad.write_text("def f(:\n    pass\n")
    assert syntax_error([str(good), str(tmp_path / "gone.py"), str(tmp_path / "x.html")]) is None
    error = syntax_error([str(good), str(bad)])
    assert error is not None and error.startswith(f"{bad}:1: invalid syntax")


def test_the_log_names_a_few_changed_files() -> None:
    assert describe_changes({"b.py", "a.py"}) == "a.py, b.py"
    assert describe_changes({f"{n}.py" for n in range(5)}) == "0.py, 1.py, 2.py and 2 more"
