"""Every operation that changes a generator, crossed with every use of it, each compared with a generator built
fresh in the same state (issue 22, "the class, not just the cases").

Operations: each ``optimize`` precision and backend a CPU has (float32, bfloat16, int8 in torch; CTranslate2
float32 and int8), ``to()``, an adapter added, switched, disabled (``disable_adapter()``), rescaled (peft's
``rescale_adapter_scale``, ``set_scale``), merged, weights edited in place or replaced, ``generation_config`` edited.
Uses: a call, a sampled call with a seed, a batched call, ``save_pretrained`` then ``from_pretrained``, and
``NegOptPipeline`` over a tiny Stable Diffusion.

How each cell runs: the generator is used the way the cell will use it (so its cache holds answers), then changed;
the reference is loaded from the same files and changed the same way, never used before. Then:

- a call, a sampled call, the pipeline: the same output as the reference;
- a batched call: the text one call per prompt gives on the reference (in float32; reduced precision rounds
  differently with the batch's shapes, and int8 quantizes a whole batch's activations with one scale, so there the
  reference makes the same batched call). Its settings stress padding and ends: ``no_repeat_ngram_size=1`` and an
  ordinary token (``"x"``) as ``pad_token_id``, so that rows that end early show what a batch puts after their end;
- ``save_pretrained`` then ``from_pretrained``: the loaded generator has the weights (their dtype, their values on
  a forward pass) and output of the generator the folder should hold, which is the reference for a lasting change
  and the generator as loaded for what is not saved: ``optimize`` (a speed step) and ``disable_adapter()`` (a
  context that ends; saving inside it warns). A rescaled adapter is saved at its scale, inside the context too.

The bases: a LoRA adapter over a tiny word-level T5 (every operation) and a tiny GPT-2 without an adapter whose EOS
is likely (the operations that need no adapter), each saved to a folder in-process. A last test checks that each
change that should show in a use does, so that no cell passes for want of a difference.

Checked by undoing each fix of issue 22 in turn (items 1, 4, 6 in its three parts, 8, 9): each makes cells here
fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Callable

import pytest
import torch

from negopt.generator import NegOptGenerator
from tiny import PROMPTS, tiny_gpt2, tiny_t5_words

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = {"max_new_tokens": 10}
BATCH_PROMPTS = PROMPTS[:6]  # six different lengths
WORDS = sorted({w for p in PROMPTS for w in p.replace(",", " ").split()} | set("x blurry lowres bad hands".split()))


# -------------------------------------------------------------------------------------------------- the bases
def _eos_likely(model, tok, scale):
    with torch.no_grad():
        model.get_output_embeddings().weight[tok.eos_token_id] *= scale
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("matrix")
    t5, t5_tok = tiny_t5_words(WORDS)  # each id a word: every output is text (byte-level T5 writes many non-text ids)
    t5.save_pretrained(root / "t5")
    t5_tok.save_pretrained(root / "t5")
    base = NegOptGenerator.from_pretrained(root / "t5")
    torch.manual_seed(0)
    lora = LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], init_lora_weights=False)
    NegOptGenerator(get_peft_model(base.model, lora).eval(), base.tokenizer, base.config).save_pretrained(
        root / "t5_lora"
    )
    gpt2, gpt2_tok = tiny_gpt2()
    _eos_likely(gpt2, gpt2_tok, -8.0)
    gpt2.save_pretrained(root / "gpt2")
    gpt2_tok.save_pretrained(root / "gpt2")
    return {"t5_lora": str(root / "t5_lora"), "gpt2": str(root / "gpt2")}


@pytest.fixture(scope="module")
def sd():
    from tiny_pipelines import tiny_sd

    pipe = tiny_sd()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load(folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft/transformers deprecation noise of the tiny models
        gen = NegOptGenerator.from_pretrained(folder, **kwargs)
    gen.set_progress_bar_config(disable=True)
    return gen


# --------------------------------------------------------------------------------------------- the operations
def _lora_layers(gen):
    from peft.tuners.lora import LoraLayer

    return [m for m in gen.model.modules() if isinstance(m, LoraLayer)]


def _optimize(precision, backend="torch"):
    def apply(gen):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CTranslate2's "a causal model's defaults stay in torch"
            gen.optimize(precision, backend=backend, warmup=False)

    return apply


def _add_adapter(gen):
    from peft import LoraConfig

    torch.manual_seed(1)
    gen.model.add_adapter(
        "two", LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], init_lora_weights=False)
    )
    gen.model.eval()


def _switch_adapter(gen):
    _add_adapter(gen)
    gen.model.set_adapter("two")
    gen.model.eval()


def _set_scale(gen):
    for m in _lora_layers(gen):
        m.set_scale("default", 0.25)


def _rescale(model, multiplier):
    from peft.helpers import rescale_adapter_scale

    return rescale_adapter_scale(model, multiplier)


def _edit_in_place(gen):
    with torch.no_grad():
        if hasattr(gen.model, "peft_config"):  # the adapter's weights, which the adapter folder saves
            for m in _lora_layers(gen):
                m.lora_B["default"].weight.mul_(-2.0)
        else:
            gen.model.transformer.h[1].mlp.c_proj.weight.mul_(3.0)


def _replace(gen):
    torch.manual_seed(5)
    if hasattr(gen.model, "peft_config"):
        layer = _lora_layers(gen)[0].lora_B["default"]
    else:
        layer = gen.model.transformer.h[0].mlp.c_fc
    layer.weight = torch.nn.Parameter(torch.randn_like(layer.weight) * 2.0)


def _edit_generation_config(gen):
    # Ban the first tokens the generator writes for the call's prompt, and make every output run longer.
    written = gen.tokenizer(gen(PROMPTS[1], **SHORT), add_special_tokens=False)["input_ids"]
    gc = gen.model.generation_config
    gc.bad_words_ids = [[t] for t in sorted(set(written[:3]))] or None
    gc.min_new_tokens = 9


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    apply: Callable | None = None  # a lasting change
    context: Callable | None = None  # a change for the span of a use: a context manager factory
    saved: str = "changed"  # what a save holds: "changed" (the change) or "loaded" (the generator as loaded)
    adapter: bool = False  # needs a LoRA generator
    exact_batching: bool = True
    save_warns: str | None = None
    changes: tuple[str, ...] = ()  # the bases where it changes an output (a test that it does)


T5, BOTH = ("t5_lora",), ("t5_lora", "gpt2")
OPS = [
    Op("as loaded"),
    Op("optimize float32", _optimize("float32"), saved="loaded"),
    Op("optimize bfloat16", _optimize("bfloat16"), saved="loaded", exact_batching=False, changes=T5),
    Op("optimize int8", _optimize("int8"), saved="loaded", exact_batching=False, changes=BOTH),
    Op("ctranslate2 float32", _optimize("float32", "ctranslate2"), saved="loaded"),
    Op("ctranslate2 int8", _optimize("int8", "ctranslate2"), saved="loaded"),
    Op("to bfloat16", lambda gen: gen.to("cpu", torch.bfloat16), exact_batching=False, changes=T5),
    Op("weights edited in place", _edit_in_place, changes=BOTH),
    Op("weight replaced", _replace, changes=BOTH),
    Op("generation_config edited", _edit_generation_config, changes=BOTH),
    Op("adapter added", _add_adapter, adapter=True),
    Op("adapter switched", _switch_adapter, adapter=True, changes=T5),
    Op(
        "adapter disabled",
        context=lambda gen: gen.model.disable_adapter(),
        saved="loaded",
        adapter=True,
        save_warns=r"disable_adapter",
        changes=T5,
    ),
    Op("adapter rescaled (context)", context=lambda gen: _rescale(gen.model, 0.5), adapter=True, changes=T5),
    Op("adapter set_scale", _set_scale, adapter=True, changes=T5),
    Op("adapter merged", lambda gen: gen.model.merge_adapter(), adapter=True),
]


CELLS = [(base, op) for base in ("t5_lora", "gpt2") for op in OPS if base == "t5_lora" or not op.adapter]
needs_ct2 = {op.name for op in OPS if "ctranslate2" in op.name}


# ----------------------------------------------------------------------------------------------------- the uses
def call(gen):
    return gen(PROMPTS[1], **SHORT)


def sampled(gen):
    return gen(PROMPTS[:3], num_candidates=2, seed=7, **SHORT)


def stress(gen):
    x = gen.tokenizer("x", add_special_tokens=False)["input_ids"][-1]  # an ordinary token as the pad
    return {**SHORT, "no_repeat_ngram_size": 1, "pad_token_id": x}


def batched(gen):
    return gen(BATCH_PROMPTS, **stress(gen))


def one_by_one(gen):
    return [gen(p, **stress(gen)) for p in BATCH_PROMPTS]


def pipeline(gen, sd):
    """The negatives NegOptPipeline writes for two prompts, and the latents they give (it calls ``gen(prompts)``)."""
    from negopt import NegOptPipeline

    out = NegOptPipeline(sd, gen)(
        PROMPTS[:2],
        num_inference_steps=1,
        height=32,
        width=32,
        output_type="latent",  # the negatives decide the latents; decoding them would add time, not checks
        generator=torch.Generator().manual_seed(0),
    )
    return out.negative_prompts, out.images


def logits(gen):
    """The model's logits on a fixed input: the weights as the model computes with them."""
    enc = gen.tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    extra = {}
    if gen.is_seq2seq:
        extra["decoder_input_ids"] = torch.zeros((2, 3), dtype=torch.long)
    with torch.inference_mode():
        return gen.model(**enc, **extra).logits.float()


# ------------------------------------------------------------------------------------------------------ the cells
@pytest.fixture(scope="module")
def cells(folders):
    """``(generator, reference)`` for a (base, operation): the generator used before the change, the reference
    not; built once a module."""
    built: dict = {}

    def get(base: str, op: Op):
        if (base, op.name) not in built:
            if op.name in needs_ct2:
                pytest.importorskip("ctranslate2")
            gen, ref = load(folders[base]), load(folders[base], local_files_only=True)
            for use in (call, sampled, batched):
                use(gen)  # the cache now holds answers made before the change
            gen(PROMPTS[:2])  # as NegOptPipeline calls it
            for g in (gen, ref):
                if op.apply is not None:
                    op.apply(g)
            built[(base, op.name)] = gen, ref
        return built[(base, op.name)]

    return get


def within(op: Op, *gens):
    stack = contextlib.ExitStack()
    if op.context is not None:
        for g in gens:
            stack.enter_context(op.context(g))
    return stack


@pytest.mark.parametrize("base, op", CELLS, ids=[f"{b}-{o.name}" for b, o in CELLS])
@pytest.mark.parametrize("use", ["call", "sampled", "batched", "pipeline"])
def test_uses_match_a_fresh_generator(cells, sd, base, op, use):
    gen, ref = cells(base, op)
    with within(op, gen, ref):
        if use == "call":
            assert call(gen) == call(ref)
        elif use == "sampled":
            assert sampled(gen) == sampled(ref)
        elif use == "batched":
            expected = one_by_one(ref) if op.exact_batching else batched(ref)
            assert batched(gen) == expected
        else:
            (negatives, images), (ref_negatives, ref_images) = pipeline(gen, sd), pipeline(ref, sd)
            assert negatives == ref_negatives
            torch.testing.assert_close(torch.as_tensor(images), torch.as_tensor(ref_images), rtol=0, atol=0)


@pytest.mark.parametrize("base, op", CELLS, ids=[f"{b}-{o.name}" for b, o in CELLS])
def test_save_then_load_holds_the_state(cells, folders, tmp_path, base, op):
    gen, ref = cells(base, op)
    with within(op, gen, ref):
        expect = pytest.warns(UserWarning, match=op.save_warns) if op.save_warns else contextlib.nullcontext()
        with expect:
            gen.save_pretrained(tmp_path)
    expected = ref if op.saved == "changed" else load(folders[base])
    # A plain model's file says its dtype ("auto" reads it); an adapter's base comes in the dtype asked for.
    adapter = os.path.isfile(os.path.join(tmp_path, "adapter_config.json"))
    loaded = load(tmp_path, torch_dtype=expected.dtype if adapter else "auto")
    with within(op if op.saved == "changed" else Op("none"), expected):
        assert loaded.dtype == expected.dtype
        if adapter and expected.dtype != torch.float32:
            # peft loads an adapter into a half-precision base in float32 (autocast_adapter_dtype), where the
            # generator that was saved computed it in bfloat16: the same weights, rounded differently.
            torch.testing.assert_close(logits(loaded), logits(expected), rtol=0.05, atol=0.1)
        else:
            torch.testing.assert_close(logits(loaded), logits(expected), rtol=1e-5, atol=1e-5)
            assert loaded(PROMPTS[:4], **SHORT) == expected(PROMPTS[:4], **SHORT)
    assert os.path.isfile(os.path.join(tmp_path, "negopt_config.json"))


CHANGING = [(b, o) for b, o in CELLS if b in o.changes]


@pytest.mark.parametrize("base, op", CHANGING, ids=[f"{b}-{o.name}" for b, o in CHANGING])
def test_each_change_changes_what_the_uses_see(cells, folders, base, op):
    """A cell is a test only if its change shows in some use: otherwise a stale cache could not be told from a
    right answer."""
    _, ref = cells(base, op)
    plain = load(folders[base])
    with within(op, ref):
        changed = (call(ref), sampled(ref), batched(ref), ref(PROMPTS[:2]))
    assert changed != (call(plain), sampled(plain), batched(plain), plain(PROMPTS[:2]))
