"""The ``negopt`` command line: :func:`main` and one module per subcommand.

``main`` (the parser and how errors exit), ``args`` (flags generated from the config dataclasses, ``--config`` YAML),
``generate``, ``env``, ``eval``, ``train`` (``train sft``, ``train rl``) and ``comfyui`` (``comfyui install``).
Nothing in the library imports this package.
"""

from negopt.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
