"""Directories that decide where our results and cleanups go can't be someone else's
(fast tier): a symlink another user owns on the way to --output-dir, a link of ours in a
directory others can change, a run state directory others can write, a planted run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atomicscan import resultsdir, state
from atomicscan.errors import UsageError

OTHER_UID = 4242


def test_a_symlink_someone_else_owns_on_the_way_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    target = tmp_path / "mine"
    target.mkdir(mode=0o700)
    link = shared / "results"
    link.symlink_to(target)
    os.lchown(link, OTHER_UID, OTHER_UID)
    with pytest.raises(UsageError, match="symlink owned by uid 4242"):
        resultsdir.scanner_results_dir(link, "packages")
    with pytest.raises(UsageError, match="symlink owned by uid 4242"):
        resultsdir.check_chain(link)


def test_our_symlink_in_a_directory_anyone_can_change_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # not sticky: anyone may replace the link
    target = tmp_path / "mine"
    target.mkdir(mode=0o700)
    (open_dir / "results").symlink_to(target)
    with pytest.raises(UsageError, match="directory others can change"):
        resultsdir.scanner_results_dir(open_dir / "results", "packages")


def test_our_own_link_in_our_own_directory_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    assert resultsdir.scanner_results_dir(tmp_path / "link", "packages") == \
        target.resolve() / "packages"


def test_a_state_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "state"
    base.mkdir()
    base.chmod(0o777)
    with pytest.raises(state.StateDirError, match="only you can write"), \
            state.RunState.create(state.new_run_id(), base):
        pass
    with pytest.raises(state.StateDirError):
        state.stale_runs(base)
    base.chmod(0o700)
    os.chown(base, OTHER_UID, OTHER_UID)
    with pytest.raises(state.StateDirError), state.RunState.create(state.new_run_id(), base):
        pass


def test_a_planted_link_is_never_taken_for_a_dead_run(tmp_path: Path) -> None:
    base = tmp_path / "state"
    base.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "journal.jsonl").write_text('{"action": "image-mount", "id": "x"}\n')
    (base / "20260101000000-deadbeef").symlink_to(elsewhere)
    assert state.stale_runs(base) == []
    assert state.live_run_ids(base) == set()
