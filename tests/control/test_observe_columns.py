"""Tables that fit (issue 11 item 7): flexible columns are cut first, then columns dropped in order."""

from __future__ import annotations

from asynccluster.observe.columns import Layout, fit_table, wrap_fields

HEADERS = ("ID", "NAME", "NOTE", "EXTRA")
ROWS = [["1", "alpha", "a long note that says a lot", "x"], ["22", "beta", "short", "yy"]]
LAYOUT = Layout(drop=("EXTRA", "NAME"), flexible=(("NOTE", 8),), right=frozenset({"ID"}))


def test_a_wide_terminal_shows_everything() -> None:
    lines = fit_table(HEADERS, ROWS, LAYOUT, 200)
    assert lines[0].split() == list(HEADERS) and "a lot" in lines[1] and lines[2].startswith("22")


def test_the_flexible_column_is_cut_before_any_column_goes() -> None:
    lines = fit_table(HEADERS, ROWS, LAYOUT, 30)
    assert lines[0].split() == list(HEADERS)
    assert all(len(line) <= 30 for line in lines) and "…" in lines[1]


def test_columns_go_in_the_given_order() -> None:
    lines = fit_table(HEADERS, ROWS, LAYOUT, 22)
    assert lines[0].split() == ["ID", "NAME", "NOTE"]
    lines = fit_table(HEADERS, ROWS, LAYOUT, 14)
    assert lines[0].split() == ["ID", "NOTE"] and all(len(line) <= 14 for line in lines)


def test_wrapped_fields_continue_under_the_label() -> None:
    lines = wrap_fields("queue  ", [f"slot {n}: 0" for n in range(8)], 40)
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert lines[1].startswith("       slot")
