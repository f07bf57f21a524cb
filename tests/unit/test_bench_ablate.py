"""bench/ablate.py: every edit still applies to the daemon's source, exactly once.

An edit that no longer matches would leave the "ablated" daemon unchanged, and the tool would
report a part of the per-file work as costing nothing. The tool stops on such an edit; this
test says so before anyone spends twenty minutes of benchmark on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ablate import EDITS, REPO, ablate, copy_tree


@pytest.mark.parametrize("variant", sorted(EDITS))
def test_each_edit_matches_the_source_once(variant: str) -> None:
    for name, old, _new in EDITS[variant]:
        assert (REPO / name).read_text(encoding="utf-8").count(old) == 1, name


def test_all_variants_apply_together_to_a_copy(tmp_path: Path) -> None:
    """Combined variants (``--variant fetch,log,checksum``) touch one file twice: the edits
    must not overlap; the copy changes, the working tree does not."""
    before = {name: (REPO / name).read_text(encoding="utf-8") for name, _, _ in _all_edits()}
    copy_tree(tmp_path, _edited_files())
    ablate(tmp_path, sorted(EDITS))
    for name, _old, new in _all_edits():
        assert new in (tmp_path / name).read_text(encoding="utf-8")
        assert (REPO / name).read_text(encoding="utf-8") == before[name]


def test_an_edit_that_no_longer_matches_stops_the_tool(tmp_path: Path) -> None:
    copy_tree(tmp_path, _edited_files())
    ablate(tmp_path, ["fsync"])
    with pytest.raises(SystemExit, match="matches 0 times"):
        ablate(tmp_path, ["fsync"])  # the old text is gone from the copy now


def _all_edits() -> list[tuple[str, str, str]]:
    return [edit for variant in sorted(EDITS) for edit in EDITS[variant]]


def _edited_files() -> list[str]:
    """The files the edits touch, not the whole tree: the package build has no git."""
    return sorted({name for name, _, _ in _all_edits()})
