"""The benchmark's servers run the maitred the caller names, not whichever is installed; the
report names the commit measured, from a worktree too."""

from __future__ import annotations

import os
from pathlib import Path

from bench.__main__ import REPO_ROOT, server_path
from bench.machine import git_commit

SRC = os.path.join(REPO_ROOT, "src")


def test_the_callers_pythonpath_comes_before_the_repository() -> None:
    tree = "/work/tree/src"
    assert server_path({"PYTHONPATH": tree}).split(os.pathsep) == [tree, REPO_ROOT, SRC]


def test_without_one_the_repository_and_its_maitred() -> None:
    assert server_path({}).split(os.pathsep) == [REPO_ROOT, SRC]


def test_the_commit_of_a_worktree_is_read_through_its_gitdir(tmp_path: Path) -> None:
    # A worktree's .git is a file; its HEAD names a branch whose ref is in the main repository.
    main_git = tmp_path / "main" / ".git"
    own = main_git / "worktrees" / "wt"
    (main_git / "refs" / "heads").mkdir(parents=True)
    own.mkdir(parents=True)
    (main_git / "refs" / "heads" / "topic").write_text("abc123\n")
    (own / "HEAD").write_text("ref: refs/heads/topic\n")
    (own / "commondir").write_text("../..\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {own}\n")
    assert git_commit(str(tree)) == "abc123"
