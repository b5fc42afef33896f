"""``negopt comfyui install COMFYUI_DIR``: write negopt's node pack into a ComfyUI installation.

The folder, ``COMFYUI_DIR/custom_nodes/negopt/``, holds an ``__init__.py`` that re-exports
:mod:`negopt.integrations.comfyui` (so the nodes are those of whichever negopt ComfyUI's Python has, and upgrading
negopt upgrades them) and a ``requirements.txt`` naming negopt, which ComfyUI-Manager reads. ComfyUI must run with a
Python that has negopt installed: :func:`install` looks for the Python environments ComfyUI's installers make and
says whether negopt is in one, and the installed ``__init__.py`` names the Python it ran in when negopt is missing.

The nodes live in :mod:`negopt.integrations.comfyui`; this module only writes text that imports them (nothing in
negopt, this command included, imports ``integrations``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from negopt import __version__
from negopt.cli.args import UsageError

__all__ = ["PACK_NAME", "MARKER", "InstallResult", "install", "init_source", "find_comfyui_pythons", "add_comfyui"]

PACK_NAME = "negopt"
# The first line of the files this command writes: how it tells its own files from a folder it must not touch.
MARKER = "# Written by `negopt comfyui install`"


def init_source() -> str:
    """The text of the installed ``__init__.py``."""
    return f'''{MARKER}; negopt itself is a pip package, and this file re-exports its nodes.
"""negopt's ComfyUI nodes: NegOpt Generator Loader and NegOpt Negative Prompt (negopt.integrations.comfyui)."""

import sys

# Some ComfyUI releases register a custom node folder under its bare name: this folder would then stand in
# sys.modules for the negopt package itself, and the import below would look for negopt inside this folder.
if getattr(sys.modules.get("negopt"), "__file__", None) == __file__:
    del sys.modules["negopt"]

try:
    from negopt.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
except ImportError as error:
    raise ImportError(
        f"negopt's ComfyUI nodes need the negopt package in the Python that runs ComfyUI ({{sys.executable}}): "
        f'run `"{{sys.executable}}" -m pip install negopt`, then restart ComfyUI. ({{error}})'
    ) from error

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
'''


def requirements_source() -> str:
    """The text of the installed ``requirements.txt`` (what ComfyUI-Manager installs for a pack)."""
    return f"{MARKER}\nnegopt>={__version__}\n"


@dataclass
class InstallResult:
    """What :func:`install` did.

    Args:
        folder: The node pack's folder.
        written: The files written (empty when they were already up to date).
        pythons: ComfyUI's Python environments found, each with the negopt version it has (None: not installed).
        messages: What to tell the user, in order.
    """

    folder: str
    written: list[str] = field(default_factory=list)
    pythons: dict[str, str | None] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def find_comfyui_pythons(comfyui_dir: str | os.PathLike) -> list[str]:
    """The Python executables of the environments ComfyUI's installers make, that exist.

    A virtual environment inside the folder (``.venv`` or ``venv``: comfy-cli, a manual install, the desktop app's
    base folder) and the Windows portable build's ``python_embeded`` beside it.
    """
    root = os.path.abspath(os.fspath(comfyui_dir))
    candidates = []
    for venv in (".venv", "venv"):
        candidates += [os.path.join(root, venv, "bin", "python"), os.path.join(root, venv, "Scripts", "python.exe")]
    candidates.append(os.path.join(os.path.dirname(root), "python_embeded", "python.exe"))
    return [path for path in candidates if os.path.isfile(path)]


def negopt_version_in(python: str, timeout: float = 60.0) -> str | None:
    """The version of negopt that ``python`` imports, or None when it has none (or cannot be run)."""
    try:
        done = subprocess.run(
            [python, "-c", "import negopt; print(negopt.__version__)"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _check_comfyui_dir(comfyui_dir: str | os.PathLike) -> str:
    root = os.path.abspath(os.path.expanduser(os.fspath(comfyui_dir)))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"COMFYUI_DIR {root!r} is not a folder; pass the ComfyUI folder (with custom_nodes/).")
    if not os.path.isdir(os.path.join(root, "custom_nodes")):
        inside = os.path.join(root, "ComfyUI")
        hint = f" (did you mean {inside!r}?)" if os.path.isdir(os.path.join(inside, "custom_nodes")) else ""
        raise FileNotFoundError(
            f"COMFYUI_DIR {root!r} has no custom_nodes folder, so it is not a ComfyUI folder{hint}. Pass the folder "
            "that holds main.py and custom_nodes/ (for the desktop app, its base path)."
        )
    return root


def install(comfyui_dir: str | os.PathLike, *, check_pythons: bool = True) -> InstallResult:
    """Write ``custom_nodes/negopt/`` into a ComfyUI folder; running it again changes nothing.

    Args:
        comfyui_dir: The ComfyUI folder (the one with ``custom_nodes/``).
        check_pythons: Run each ComfyUI Python environment found to see whether it has negopt.

    Returns:
        What was written and what to tell the user.

    Raises:
        FileNotFoundError: ``comfyui_dir`` is not a ComfyUI folder.
        FileExistsError: ``custom_nodes/negopt`` holds files this command did not write (another pack).
    """
    root = _check_comfyui_dir(comfyui_dir)
    folder = os.path.join(root, "custom_nodes", PACK_NAME)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{folder!r} exists and is not a folder; move it away, then run this again.")
    files = {"__init__.py": init_source(), "requirements.txt": requirements_source()}
    current: dict[str, str | None] = {}
    for name in files:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                current[name] = f.read()
        except FileNotFoundError:
            current[name] = None
        if current[name] is not None and not current[name].startswith(MARKER):
            raise FileExistsError(
                f"{path!r} was not written by negopt (another node pack named {PACK_NAME!r}?); it was left as it "
                "is. Move that folder away, then run this again."
            )
    result = InstallResult(folder=folder)
    os.makedirs(folder, exist_ok=True)
    for name, text in files.items():
        if current[name] != text:
            path = os.path.join(folder, name)
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            result.written.append(path)
    if result.written:
        names = ", ".join(os.path.basename(p) for p in result.written)
        result.messages.append(f"installed the negopt nodes in {folder} (wrote {names})")
    else:
        result.messages.append(f"the negopt nodes in {folder} are already up to date")
    command = f'-m pip install "negopt>={__version__}"'
    if check_pythons:
        for python in find_comfyui_pythons(root):
            result.pythons[python] = negopt_version_in(python)
    if result.pythons:
        for python, version in result.pythons.items():
            if version is None:
                result.messages.append(f'ComfyUI\'s Python {python} has no negopt: run `"{python}" {command}`.')
            else:
                result.messages.append(f"ComfyUI's Python {python} has negopt {version}.")
    else:
        result.messages.append(
            f"negopt must be installed in the Python that runs ComfyUI. This negopt ({__version__}) is in "
            f"{sys.executable}; if ComfyUI runs with another Python, run `<that python> {command}`."
        )
    result.messages.append("Restart ComfyUI; the nodes are under the 'negopt' category.")
    return result


def add_comfyui(sub: Any) -> None:
    p = sub.add_parser(
        "comfyui",
        help="install negopt's ComfyUI nodes",
        description="negopt's ComfyUI node pack: NegOpt Generator Loader and NegOpt Negative Prompt.",
    )
    actions = p.add_subparsers(dest="comfyui_command", metavar="ACTION")
    actions.required = True
    i = actions.add_parser(
        "install",
        help="write COMFYUI_DIR/custom_nodes/negopt/",
        description="Write COMFYUI_DIR/custom_nodes/negopt/__init__.py, which re-exports negopt's nodes, and a "
        "requirements.txt naming negopt; say whether ComfyUI's Python has negopt. Running it again changes nothing.",
    )
    i.add_argument("comfyui_dir", metavar="COMFYUI_DIR", help="the ComfyUI folder, the one with custom_nodes/")
    i.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    i.set_defaults(func=_run_install)


def _run_install(args: argparse.Namespace) -> int:
    try:
        result = install(args.comfyui_dir)
    except (FileNotFoundError, FileExistsError) as e:
        raise UsageError(str(e)) from e
    for message in result.messages:
        print(message)
    return 0
