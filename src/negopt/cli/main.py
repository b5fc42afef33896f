"""The ``negopt`` command: ``generate``, ``env``, ``eval``, ``train sft``, ``train rl`` and ``comfyui install``.

Each command's flags are generated from its config dataclasses (:mod:`negopt.cli.args`); ``--config FILE.yaml`` takes
the same keys and the flags given override it. Errors found before any work starts (a bad flag or config value, a
missing file, a model that cannot be loaded, a device this torch cannot use) print one line and exit with status 2.
Anything raised once the work has begun prints its full traceback (exit 1); ``--debug`` shows the traceback always.
SIGTERM during training saves a checkpoint and exits 143; a closed output pipe (``negopt generate ... | head``) exits
quietly with 141.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from negopt import __version__
from negopt.cli.args import EXIT_BROKEN_PIPE, EXIT_USAGE, UsageError
from negopt.cli.comfyui import add_comfyui
from negopt.cli.env import add_env
from negopt.cli.generate import add_generate

__all__ = ["main", "build_parser"]


def _command_of(argv: Sequence[str] | None) -> tuple[str, ...] | None:
    """The (sub)command words of ``argv`` (``("train", "rl")``), or None for all."""
    if argv is None:
        return None
    words = [a for a in argv if not a.startswith("-")]
    if words[:1] == ["train"]:
        return tuple(words[:2])
    return tuple(words[:1])


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``negopt`` argument parser, flags generated from the config dataclasses.

    Args:
        argv: The command line about to be parsed: only its command's flags are built (its configs imported), so
            ``negopt generate`` does not import the trainers. None builds every command's flags.
    """
    from negopt.cli.eval import add_eval
    from negopt.cli.train import add_train

    wanted = _command_of(argv)

    def full(*path: str) -> bool:
        return (
            wanted is None
            or wanted[: len(path)] == path
            or (len(wanted) < len(path) and path[: len(wanted)] == wanted)
        )

    parser = argparse.ArgumentParser(prog="negopt", description="Negative prompts written for you.")
    parser.add_argument("--version", action="version", version=f"negopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_generate(sub, full("generate"))
    add_env(sub)
    add_eval(sub, full("eval"))
    add_train(sub, full("train", "sft"), full("train", "rl"))
    add_comfyui(sub)
    return parser


def _fail(parser: argparse.ArgumentParser, args: argparse.Namespace, error: BaseException) -> None:
    if getattr(args, "debug", False):
        traceback.print_exception(error.__cause__ or error)
    sub_command = getattr(args, "train_command", None) or getattr(args, "comfyui_command", None)
    command = " ".join(x for x in (args.command, sub_command) if x)
    parser.exit(EXIT_USAGE, f"negopt {command}: error: {error}\n")


def _quiet_broken_pipe() -> int:
    # Point stdout at /dev/null so that Python's flush at exit does not raise again.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``negopt`` command; returns the exit status.

    Setup (parsing, checking and loading what was asked for) reports a usage error in one line with status 2; the
    work itself raises its errors with their traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        work = args.func(args)
    except (UsageError, ImportError) as e:
        _fail(parser, args, e)
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    try:
        return int(work() if callable(work) else work or 0)
    except UsageError as e:  # found by the work before it changed anything (checkpoints that exist, say)
        _fail(parser, args, e)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
