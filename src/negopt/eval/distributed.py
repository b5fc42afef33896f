""":func:`~negopt.eval.evaluate` over several processes (``torchrun``, ``accelerate launch``).

Under a launcher (``WORLD_SIZE`` above 1) each process takes every ``num_processes``-th batch of prompts, renders
and saves its images as it goes, and scores every ``num_processes``-th chunk of each condition's images; the main
process gathers the negatives, the per-image scores and the Inception logits (never per-process summaries: the
Inception Score and the bootstrap intervals are statistics of the whole set) and writes the one report. Batches and
scoring chunks are the ones a one-process run makes, so the report is the same, number for number.

Batches go round-robin rather than in contiguous blocks (accelerate's ``split_between_processes``): a run resumed on
a folder that a run with another number of processes (one, say) left half done finds the missing batches spread over
all processes, not all in the last process's block.

Without a launcher nothing here touches ``torch.distributed`` or accelerate's state: one process does everything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = ["Processes", "launched", "is_main_process", "process_device"]

T = TypeVar("T")


def launched() -> bool:
    """Whether this process is one of several started by ``torchrun`` or ``accelerate launch``."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Whether this process is the main one (rank 0), or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def process_device(device: str | None) -> str | None:
    """This process's device for a ``--device`` given to all: ``cuda`` means ``cuda:LOCAL_RANK`` under a launcher.

    A device with an index, another kind of device, or None is returned as it is.
    """
    if device == "cuda" and launched():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


class Processes:
    """The processes of one evaluation: this one alone, or all those of a ``torchrun`` / ``accelerate launch`` run.

    Under a launcher it starts accelerate's ``PartialState`` (gloo on a machine without CUDA, where accelerate would
    otherwise run each process on its own; NCCL on GPUs).
    """

    def __init__(self) -> None:
        self.state = None
        self.num_processes = 1
        self.process_index = 0
        if launched():
            import torch
            from accelerate import PartialState

            self.state = PartialState(cpu=not torch.cuda.is_available())
            self.num_processes = self.state.num_processes
            self.process_index = self.state.process_index

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's items: every ``num_processes``-th, starting at its index."""
        return list(items[self.process_index :: self.num_processes])

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in process order, on every process (``[value]`` alone)."""
        if self.state is None:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value``, on every process."""
        if self.state is None:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]
