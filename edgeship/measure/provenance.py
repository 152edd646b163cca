"""Where a measurement came from: the git commit of the user's project, when there is one.

A history line (edgeship/measure/sessions.py) records the commit of the directory holding
edgeship.toml, and whether tracked files differed from it (``dirty``; untracked files such
as ``build/`` do not count), so ``edgeship history`` can name the commit where a change
came. The project need not be a git repository and git need not be installed: then both are
null. Nothing here can fail a profile or an eval; the commit is a label, never evidence.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from edgeship.config import Config

# git answers in milliseconds; a hung one (a network file system) must not hold up a profile
GIT_TIMEOUT_S = 10.0


def _git(directory: Path, *argv: str) -> str | None:
    """``git -C directory argv`` -> its stdout, or None when git is missing, fails or hangs."""
    # GIT_OPTIONAL_LOCKS=0: `git status` may refresh the index, which would take its lock
    # under a concurrent git command of the user's
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(["git", "-C", str(directory), *argv], capture_output=True, text=True,
                             timeout=GIT_TIMEOUT_S, check=False, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def project_source(cfg: Config) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project of ``cfg``."""
    if cfg.path is None:     # a config built in code has no directory to ask
        return {"commit": None, "dirty": None}
    directory = cfg.path.parent
    head = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD")
    commit = (head or "").strip()
    if len(commit) < 40 or not all(ch in "0123456789abcdef" for ch in commit):
        return {"commit": None, "dirty": None}    # not a repository, or one without a commit yet
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status.strip())}
