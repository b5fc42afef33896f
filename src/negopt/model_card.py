"""The model card (``README.md``) written beside a saved generator, built on ``huggingface_hub``'s ``ModelCard``.

The metadata header (library, tags, base model, pipeline tag) is a ``ModelCardData``, so the hub reads it as it reads
any other card; the body says what the generator is and how to load it. A ``README.md`` that negopt did not write
(its metadata has no ``library_name: negopt``) is the user's and is left alone.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from huggingface_hub import ModelCard, ModelCardData

from negopt.hub import hub_model_id

__all__ = ["MODEL_CARD_NAME", "GeneratorCardInfo", "TrainingCardInfo", "generator_model_card", "write_model_card"]

logger = logging.getLogger(__name__)

MODEL_CARD_NAME = "README.md"
LIBRARY_NAME = "negopt"
TAGS = ["negopt", "negative-prompt", "text-to-image", "stable-diffusion", "diffusers"]

_BODY = """
# {title}

A negative-prompt generator for text-to-image models, made with negopt (`pip install negopt`; the method is
NegOpt, Ogezi & Shi, 2024). It reads a prompt and writes a negative prompt for it.

- Model: {model_class} ({model_type}){adapter_line}
- Prompt template: `{template}`
- negopt version: {version}

## How to use

```python
from negopt import NegOptGenerator, NegOptPipeline

gen = NegOptGenerator.from_pretrained("{repo_id}")
gen("a portrait photo of an old fisherman")          # -> a negative prompt

# Or fill the negative prompt of any diffusers pipeline:
# pipe = NegOptPipeline(stable_diffusion_pipeline, gen)
```

From the command line: `negopt generate --model {repo_id} "a portrait photo of an old fisherman"`.
"""


@dataclass
class GeneratorCardInfo:
    """What the card says about a generator.

    Attributes:
        model_class: The transformers class of the (base) model, e.g. ``"T5ForConditionalGeneration"``.
        model_type: ``"seq2seq"`` or ``"causal"``.
        prompt_template: The template that turns a prompt into the model input.
        negopt_version: The negopt version that saved the generator.
        base_model: The base model's folder or hub id (only a hub id goes into the metadata).
        is_adapter: Whether the folder holds a LoRA adapter over ``base_model``.
    """

    model_class: str
    model_type: str
    prompt_template: str
    negopt_version: str | None
    base_model: str | None = None
    is_adapter: bool = False

    @classmethod
    def from_model(cls, model, config, *, is_adapter: bool | None = None) -> GeneratorCardInfo:
        """The card info of ``model`` (a transformers model or a ``PeftModel``) saved with ``config``.

        Args:
            model: The model; a ``PeftModel``'s base model class is named.
            config: The :class:`~negopt.config.NegOptConfig` saved beside it.
            is_adapter: Whether the folder holds an adapter; None: whether ``model`` is a ``PeftModel`` (pass False
                for an adapter merged into the saved weights).
        """
        has_adapter = hasattr(model, "peft_config")
        return cls(
            model_class=type(model.get_base_model() if has_adapter else model).__name__,
            model_type=config.model_type,
            prompt_template=config.prompt_template,
            negopt_version=config.negopt_version,
            base_model=config.base_model_name_or_path,
            is_adapter=has_adapter if is_adapter is None else is_adapter,
        )


@dataclass
class TrainingCardInfo:
    """How a generator was trained, for the card's "Training" section (written by the trainers).

    Attributes:
        summary: One sentence on what the training was, e.g. ``"Supervised fine-tuning (SFT) with negopt's
            SFTTrainer (negopt train sft)."``.
        dataset: The training data as the run named it; a hub dataset id also goes into the metadata's
            ``datasets``. None: data passed in as objects.
        settings: The key settings, in order: the rows of the section's table (name -> value as text).
        results: Final metrics by name (e.g. ``{"validation loss": 0.41}``).
        tags: Extra metadata tags, e.g. ``["sft"]``.
    """

    summary: str
    dataset: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    results: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _training_section(training: TrainingCardInfo) -> str:
    lines = ["", "## Training", "", training.summary, ""]
    if training.settings:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in training.settings.items()]
        lines.append("")
    if training.results:
        lines += ["At the end: " + ", ".join(f"{k} {v:.4g}" for k, v in training.results.items()) + ".", ""]
    return "\n".join(lines)


def _hub_dataset_id(name: str | None) -> str | None:
    """``name`` when it names a hub dataset (shaped like an id and not a local file or folder), else None."""
    if not name or os.path.exists(name):
        return None
    return hub_model_id(name)  # the same id rule for models and datasets


def generator_model_card(
    info: GeneratorCardInfo, repo_id: str | None = None, *, training: TrainingCardInfo | None = None
) -> ModelCard:
    """The model card of a generator; ``repo_id`` (when pushing) names the repository in the title and examples.

    ``training`` (from a trainer) adds a "Training" section and the dataset and tags to the metadata.
    """
    dataset = _hub_dataset_id(training.dataset) if training is not None else None
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        tags=list(TAGS) + [t for t in (training.tags if training is not None else []) if t not in TAGS],
        base_model=hub_model_id(info.base_model),
        datasets=[dataset] if dataset else None,
        pipeline_tag="text2text-generation" if info.model_type == "seq2seq" else "text-generation",
    )
    body = _BODY.format(
        title=repo_id.split("/")[-1] if repo_id else "negopt generator",
        model_class=info.model_class,
        model_type=info.model_type,
        adapter_line=f", LoRA adapter over `{info.base_model}`" if info.is_adapter else "",
        template=info.prompt_template.replace("\n", "\\n"),
        version=info.negopt_version,
        repo_id=repo_id or "path/to/this/folder",
    )
    if training is not None:
        body += _training_section(training)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _written_by_negopt(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.startswith("---"):  # no metadata block: not a card negopt wrote
        return False
    return ModelCard(text, ignore_metadata_errors=True).data.get("library_name") == LIBRARY_NAME


def write_model_card(folder: str | os.PathLike, card: ModelCard, *, overwrite: bool = False) -> bool:
    """Write ``card`` to ``folder/README.md``; returns whether it was written.

    An existing README that negopt did not write is kept (and False returned) unless ``overwrite``.
    """
    path = os.path.join(os.fspath(folder), MODEL_CARD_NAME)
    if not overwrite and os.path.isfile(path) and not _written_by_negopt(path):
        logger.info("keeping the existing %s in %s", MODEL_CARD_NAME, folder)
        return False
    card.save(path)
    return True
