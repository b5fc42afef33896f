"""Checkpoints that survive a killed run: finding the last complete one, saving on SIGTERM, stopping on a NaN loss.

Shared by the trainers. transformers' ``Trainer`` writes ``checkpoint-N`` in place, ``trainer_state.json`` last, so a
run killed while saving leaves a folder without it: :func:`last_checkpoint` skips such a folder (moving it aside
with a warning) and resumes from the one before. A checkpoint whose safetensors weights file is damaged (a disk
that filled up, a file copied in part) is skipped and moved aside the same way, with a warning that names the file.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
import warnings

import torch
from transformers import TrainerCallback

__all__ = [
    "CHECKPOINTS_DIR",
    "NonFiniteLossError",
    "SigtermCheckpointCallback",
    "SigtermFlag",
    "damaged_weights",
    "is_complete_checkpoint",
    "last_checkpoint",
]

logger = logging.getLogger(__name__)

# Under a trainer's output_dir; the finished generator lives at output_dir's top level.
CHECKPOINTS_DIR = "checkpoints"
# Written by transformers' JIT checkpointing while a checkpoint is being saved.
_INCOMPLETE_MARKER = "checkpoint-is-incomplete.txt"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stopped and its last complete checkpoint is kept."""


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a ``checkpoint-N`` folder was written to the end (``trainer_state.json`` is the Trainer's last file)."""
    return os.path.isfile(os.path.join(path, "trainer_state.json")) and not os.path.exists(
        os.path.join(path, _INCOMPLETE_MARKER)
    )


def damaged_weights(path: str | os.PathLike) -> tuple[str, str] | None:
    """The first ``.safetensors`` file in the checkpoint folder ``path`` that cannot be read, and why; else None."""
    from negopt.hub import safetensors_error

    path = os.fspath(path)
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            error = safetensors_error(os.path.join(path, name))
            if error:
                return os.path.join(path, name), error
    return None


def _set_aside(folder: str, path: str, label: str) -> None:
    # Not "checkpoint-*": the Trainer's rotation globs for that and would count it.
    aside = os.path.join(folder, f"{label}-{os.path.basename(path)}")
    n = 1
    while os.path.exists(aside):
        aside, n = os.path.join(folder, f"{label}{n}-{os.path.basename(path)}"), n + 1
    os.replace(path, aside)


def numbered_folders(folder: str | os.PathLike, prefix: str) -> list[tuple[int, str]]:
    """The ``<prefix>N`` folders in ``folder``, as ``(N, path)`` by increasing N (none if ``folder`` is missing)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found = []
    for name in os.listdir(folder):
        m = pattern.match(name)
        if m and os.path.isdir(os.path.join(folder, name)):
            found.append((int(m.group(1)), os.path.join(folder, name)))
    return sorted(found)


def last_checkpoint(folder: str | os.PathLike, *, set_aside_incomplete: bool = True) -> str | None:
    """The newest complete and readable ``checkpoint-N`` in ``folder``, or None.

    Newer, incomplete checkpoints (a run killed while saving) are renamed to ``incomplete-checkpoint-N``, and newer
    ones with a damaged safetensors weights file to ``damaged-checkpoint-N``, each with a warning, when
    ``set_aside_incomplete`` is true, so that the Trainer neither resumes from nor rotates them.
    """
    folder = os.fspath(folder)
    for _step, path in reversed(numbered_folders(folder, "checkpoint-")):
        if not is_complete_checkpoint(path):
            why, label = "is incomplete (the run was stopped while saving it)", "incomplete"
        else:
            damaged = damaged_weights(path)
            if damaged is None:
                return path
            why, label = f"has a damaged weights file, {damaged[0]} ({damaged[1]})", "damaged"
        aside = f"; it is moved aside as {label}-{os.path.basename(path)}" if set_aside_incomplete else ""
        warnings.warn(f"checkpoint {path} {why}; using the one before it{aside}.", UserWarning, stacklevel=2)
        if set_aside_incomplete:
            _set_aside(folder, path, label)
    return None


def check_loss(loss: torch.Tensor, step: int, checkpoints_dir: str) -> None:
    """Raise :class:`NonFiniteLossError` when ``loss`` is NaN or infinite, naming the step and the last checkpoint."""
    value = float(loss.detach().float().mean())
    if math.isfinite(value):
        return
    last = last_checkpoint(checkpoints_dir, set_aside_incomplete=False)
    where = f"The last good checkpoint is {last}; " if last else "No checkpoint was saved yet; "
    raise NonFiniteLossError(
        f"the training loss is {value} at step {step}; training stopped. {where}lower the learning rate, or train in "
        "float32 or bf16 instead of fp16, then resume."
    )


class SigtermFlag:
    """A context manager that sets ``requested`` when the process gets SIGTERM (a preempted cloud machine).

    The handler only sets the flag, so the trainer can finish the step in flight, save a checkpoint and stop; a kill
    mid-update would lose the step. The previous handler is restored on exit. Outside the main thread, where Python
    cannot install a signal handler, it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        else:
            logger.info("not in the main thread: SIGTERM will not save a checkpoint")
        return self

    def __exit__(self, *exc) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        return False


class SigtermCheckpointCallback(SigtermFlag, TrainerCallback):
    """Save a checkpoint and stop when the process gets SIGTERM (a preempted cloud machine), instead of dying.

    Use :meth:`installed` around ``trainer.train()``: the handler only sets a flag, the callback acts on it at the
    next step end. With several processes the flag is shared (an all-reduce per step), so every rank stops at the
    same step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: int | None = None

    def _handler(self, signum, frame) -> None:
        if not self.requested:
            logger.warning("SIGTERM received: saving a checkpoint at the end of this step, then stopping.")
        super()._handler(signum, frame)

    def installed(self) -> SigtermCheckpointCallback:
        """A context manager that installs the SIGTERM handler and restores the previous one on exit."""
        return self

    def _any_rank_requested(self, args) -> bool:
        requested = self.requested
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                flag = torch.tensor([1.0 if requested else 0.0], device=args.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                requested = bool(flag.item())
        return requested

    def on_step_end(self, args, state, control, **kwargs):
        if self._any_rank_requested(args):
            self.requested = True
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Raise :class:`NotADirectoryError` when ``output_dir`` or its ``checkpoints`` entry exists but is not a folder.

    Meant to run before a trainer loads anything, so that a path typo costs seconds, not a model download.
    """
    output_dir = os.fspath(output_dir)
    for path in (output_dir, os.path.join(output_dir, CHECKPOINTS_DIR)):
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(
                f"output_dir={output_dir!r}: {path!r} exists and is a file, not a folder; choose another output_dir "
                "(or move the file)."
            )
