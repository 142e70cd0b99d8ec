"""The benchmark's servers run the maitred the caller names, not whichever is installed."""

from __future__ import annotations

import os

from bench.__main__ import REPO_ROOT, server_path

SRC = os.path.join(REPO_ROOT, "src")


def test_the_callers_pythonpath_comes_before_the_repository() -> None:
    tree = "/work/tree/src"
    assert server_path({"PYTHONPATH": tree}).split(os.pathsep) == [tree, REPO_ROOT, SRC]


def test_without_one_the_repository_and_its_maitred() -> None:
    assert server_path({}).split(os.pathsep) == [REPO_ROOT, SRC]
