"""negopt's ComfyUI node pack: a generator loader and a negative-prompt node, in ComfyUI's V1 node shape.

ComfyUI loads a custom node pack from ``ComfyUI/custom_nodes/<name>/__init__.py`` and reads its
``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS``; ``negopt comfyui install COMFYUI_DIR``
(:mod:`negopt.cli.comfyui`) writes such a file, which re-exports the names below. The nodes are plain classes
(``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``, ``CATEGORY``): importing them needs negopt, not ComfyUI, and
imports no torch until a node runs.

- :class:`NegOptGeneratorLoader`: the built-in generator, a local folder or a hub id -> ``NEGOPT_GENERATOR``,
  loaded once per source and settings (:mod:`~negopt.integrations.comfyui.loading`).
- :class:`NegOptNegativePrompt`: a prompt (and optionally a generator, the user's own negative and how to combine
  them) -> the negative prompt ``STRING``, to wire into a CLIP Text Encode node.
"""

from negopt.integrations.comfyui.nodes import (
    CATEGORY,
    GENERATOR_TYPE,
    NODE_CLASS_MAPPINGS,
    NODE_DISPLAY_NAME_MAPPINGS,
    NegOptGeneratorLoader,
    NegOptNegativePrompt,
)

__all__ = [
    "NegOptGeneratorLoader",
    "NegOptNegativePrompt",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "GENERATOR_TYPE",
    "CATEGORY",
]
