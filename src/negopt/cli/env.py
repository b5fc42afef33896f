"""``negopt env``: versions and the device, for bug reports."""

from __future__ import annotations

import argparse
from typing import Any

from negopt import __version__

__all__ = ["add_env"]


def add_env(sub: Any) -> None:
    p = sub.add_parser("env", help="print versions and the device, for bug reports")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    p.set_defaults(func=_run_env)


def _run_env(args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    print(f"negopt: {__version__}")
    print(f"python: {platform.python_version()} ({platform.platform()})")
    for name in ("torch", "transformers", "diffusers", "peft", "accelerate", "huggingface_hub", "safetensors"):
        try:
            print(f"{name}: {version(name)}")
        except PackageNotFoundError:
            print(f"{name}: not installed")
    import torch

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}")
    return 0
