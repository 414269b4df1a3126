"""Make a training directory safe to resume after the run was killed.

ESPnet's trainer writes ``checkpoint.pth`` (the resumable state) and ``<N>epoch.pth`` in
place with ``torch.save``; a run killed during one of those writes leaves a cut-off zip,
and ``--resume true`` would then fail on it at every rerun. Before a training stage
resumes, `set_aside_damaged_checkpoints` renames damaged checkpoints to
``<name>.damaged``; without a whole ``checkpoint.pth`` the stage trains again from the
start, so the models it writes never come from a damaged state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Union

from espnet_ofa.fileio import zip_problem

DAMAGED_SUFFIX = ".damaged"
RESUME_STATE = "checkpoint.pth"


def set_aside_damaged_checkpoints(exp_dir: Union[str, os.PathLike]) -> List[str]:
    """Rename every damaged ``*.pth`` file (not a symlink) of ``exp_dir``; and, if any was
    damaged, the resumable state too (the epochs it counts may be the damaged ones).

    Returns one note per renamed file, saying why.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return []
    notes = []
    damaged = False
    for path in sorted(exp_dir.glob("*.pth")):
        if path.is_symlink() or not path.is_file():
            continue
        problem = zip_problem(path)
        if problem is not None:
            damaged = True
            os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
            notes.append(f"{path} is damaged ({problem}): renamed to {path.name}{DAMAGED_SUFFIX}")
    state = exp_dir / RESUME_STATE
    if damaged and state.is_file():
        os.replace(state, state.with_name(state.name + DAMAGED_SUFFIX))
        notes.append(f"{state} counts epochs whose model files were damaged: renamed to "
                     f"{state.name}{DAMAGED_SUFFIX}")
    if damaged:
        notes.append(f"{exp_dir}: training starts again from the first epoch")
    return notes
