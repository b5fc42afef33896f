"""Checkpoints of the RL trainer: ``output_dir/checkpoints/step-N``, written whole or not at all.

A checkpoint is written into a hidden temporary folder beside the others and renamed into place when every file is
there, so a run killed mid-write leaves no half checkpoint that a resume could pick. Its contents are accelerate's
``save_state`` (optimizer, scheduler, every process's RNG state, a normalising reward's statistics) with the adapter
weights (safetensors) in place of the model, and ``trainer_state.json`` (the step and counters), written last.
"""

from __future__ import annotations

import json
import os
import shutil

from negopt.train.checkpointing import CHECKPOINTS_DIR, numbered_folders

TRAINER_STATE_NAME = "trainer_state.json"


def checkpoint_path(output_dir: str | os.PathLike, step: int) -> str:
    """The folder of the checkpoint taken after ``step`` steps."""
    return os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR, f"step-{step}")


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """The complete checkpoints under ``output_dir``, oldest first, as ``(step, path)``."""
    root = os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR)
    return [
        (step, path)
        for step, path in numbered_folders(root, "step-")
        if os.path.isfile(os.path.join(path, TRAINER_STATE_NAME))
    ]


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete checkpoint under ``output_dir``, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def begin_checkpoint(output_dir: str | os.PathLike, step: int) -> str:
    """Create (empty) the temporary folder a checkpoint is written into; main process only."""
    tmp = os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR, f".tmp-step-{step}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def commit_checkpoint(tmp: str, output_dir: str | os.PathLike, step: int, save_total_limit: int | None) -> str:
    """Rename the finished temporary folder into place and drop the oldest beyond ``save_total_limit``."""
    final = checkpoint_path(output_dir, step)
    if os.path.exists(final):
        # A resumed run that saves the same step again: move the old one aside first, so that at every moment
        # one complete step-N exists.
        trash = final + ".old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if save_total_limit is not None:
        for _, path in list_checkpoints(output_dir)[:-save_total_limit]:
            shutil.rmtree(path, ignore_errors=True)
    return final


def write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
