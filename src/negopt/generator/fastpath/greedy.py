"""The greedy decode loop behind ``NegOptGenerator.optimize()``: it replaces ``model.generate`` for greedy calls.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator.optimize()``.

The loop (:class:`GreedyDecoder`) runs for calls whose settings it implements exactly (:func:`greedy_plan` says
which): the encoder (or the causal prefill) runs once, then one decoder step a token over a static KV cache, the next
token chosen on the device with no host synchronisation inside the loop (finished rows are checked every few steps).
On CUDA the step is compiled with ``torch.compile`` and captured as a CUDA graph, so a step is one graph replay.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["FAST_SETTINGS", "GreedyPlan", "greedy_plan", "GreedyDecoder"]

# Generation settings the loop implements exactly, as generate's logits processors do. Sampling-only settings
# (temperature, top_k, ...) are listed because greedy generate ignores them too. Any other setting that differs from
# transformers' default sends the call to ``model.generate``.
FAST_SETTINGS = frozenset(
    {
        "max_new_tokens",
        "max_length",  # overridden by max_new_tokens, which the loop requires
        "min_length",
        "min_new_tokens",
        "repetition_penalty",
        "no_repeat_ngram_size",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "eos_token_id",
        "pad_token_id",
        "bos_token_id",
        "decoder_start_token_id",
        "do_sample",
        "num_beams",
        "num_return_sequences",
        "use_cache",
        "output_attentions",
        "output_hidden_states",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "top_h",
        "typical_p",
        "epsilon_cutoff",
        "eta_cutoff",
        "cache_implementation",
        "compile_config",
        "disable_compile",
        "transformers_version",
        "_from_model_config",
    }
)


@dataclass(frozen=True)
class GreedyPlan:
    """What a greedy call asks for, in the terms of the decode loop."""

    max_new_tokens: int
    eos: tuple[int, ...]
    pad: int
    start: int | None  # the decoder start token (seq2seq)
    repetition_penalty: float
    no_repeat_ngram_size: int
    min_length: int
    min_new_tokens: int
    forced_bos: int | None
    forced_eos: tuple[int, ...] | None


def _ids(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def greedy_plan(model: torch.nn.Module, kwargs: dict[str, Any], seq2seq: bool) -> GreedyPlan | None:
    """The loop's plan for a call of ``model.generate(**kwargs)``, or None when the call needs ``generate``.

    The model's ``generation_config`` is merged with ``kwargs`` as ``generate`` merges them; the call takes the loop
    only when it is greedy (one beam, no sampling, one sequence) and every setting that differs from transformers'
    default is in :data:`FAST_SETTINGS`. Anything else (beams, sampling, ``bad_words_ids``, ``suppress_tokens``,
    ``stop_strings``, a logits processor, ...) returns None.
    """
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return None
    from transformers import GenerationConfig

    gc = copy.deepcopy(gc)
    if gc.update(**kwargs):  # keys that are not generation settings (logits_processor, streamer, ...)
        return None
    default = GenerationConfig().to_dict()
    for key, value in gc.to_dict().items():
        if key not in FAST_SETTINGS and value != default.get(key, value):
            return None
    if gc.do_sample or (gc.num_beams or 1) != 1 or (gc.num_return_sequences or 1) != 1 or gc.use_cache is False:
        return None
    if not isinstance(gc.max_new_tokens, int) or gc.max_new_tokens < 1:
        return None
    eos = _ids(gc.eos_token_id) or ()
    pad = gc.pad_token_id if gc.pad_token_id is not None else (eos[0] if eos else None)
    start = None
    if seq2seq:
        start = gc.decoder_start_token_id
        if start is None:
            start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            start = gc.bos_token_id
        if isinstance(start, (list, tuple)) or start is None:
            return None
    elif gc.forced_bos_token_id is not None:  # a causal prompt of one token only: leave it to generate
        return None
    if pad is None:
        return None
    return GreedyPlan(
        max_new_tokens=gc.max_new_tokens,
        eos=eos,
        pad=int(pad),
        start=None if start is None else int(start),
        repetition_penalty=float(gc.repetition_penalty if gc.repetition_penalty is not None else 1.0),
        no_repeat_ngram_size=int(gc.no_repeat_ngram_size or 0),
        min_length=int(gc.min_length or 0) if eos else 0,
        min_new_tokens=int(gc.min_new_tokens or 0) if eos else 0,
        forced_bos=None if gc.forced_bos_token_id is None else int(gc.forced_bos_token_id),
        forced_eos=_ids(gc.forced_eos_token_id),
    )


class _State:
    """The loop's tensors for one shape, kept between calls at fixed addresses (CUDA graphs replay on them)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)
        for t in values.values():
            if isinstance(t, torch.Tensor) and t.is_cuda:
                torch._dynamo.mark_static_address(t)


class GreedyDecoder:
    """Greedy decoding for a seq2seq or causal LM: encoder (or prefill) once, then one step a token.

    Args:
        model: The transformers model (``_can_compile_fullgraph`` models only when ``compile`` is True).
        compile: Compile the step (``mode="reduce-overhead"`` on CUDA: CUDA graphs).
        check_every: Steps between checks (one host synchronisation each) for rows that all finished.
    """

    max_states = 8  # shapes kept (each holds a KV cache)
    cuda_graphs = True  # replay the compiled step as a CUDA graph (set False after a failed capture)

    def __init__(self, model: torch.nn.Module, compile: bool = False, check_every: int = 8) -> None:
        self.model = model
        self.check_every = check_every
        self._states: OrderedDict[tuple, _State] = OrderedDict()
        import inspect

        # transformers 5 renames ``past_key_values`` to ``cache`` model by model.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._compiled = None
        self._compiled_first = None
        if compile:
            # On CUDA the compiled step is captured into a CUDA graph of our own (below), replayed once a step: less
            # host work a step than mode="reduce-overhead", whose guards and bookkeeping run at each call.
            self._compiled = torch.compile(self._step_eager, fullgraph=False, dynamic=False)
            if next(model.parameters()).is_cuda:  # on a CPU, compiling this too costs more than it gains
                self._compiled_first = torch.compile(self._first, fullgraph=False, dynamic=False)

    def _state(self, rows: int, width: int, n_new: int, seq2seq: bool, device: torch.device) -> _State:
        key = (rows, width, n_new, seq2seq, device)
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
            state.cache.reset()
            return state
        from transformers import EncoderDecoderCache, StaticCache

        config = self.model.config.get_text_config(decoder=True)
        if seq2seq:
            cache = EncoderDecoderCache(
                StaticCache(config=config, max_cache_len=n_new + 1), StaticCache(config=config, max_cache_len=width)
            )
            base = 1
        else:
            cache = StaticCache(config=config, max_cache_len=width + n_new)
            base = width
        long = {"dtype": torch.long, "device": device}
        state = _State(
            history=torch.full((rows, base + n_new), -1, **long),
            cur=torch.full((1,), base, **long),
            unfinished=torch.ones(rows, dtype=torch.bool, device=device),
            mask=torch.ones((rows, width + (0 if seq2seq else n_new)), **long),
            position_offset=torch.zeros((rows, 1), **long),
            len_offset=torch.zeros((1,), **long),  # generate's length minus the history index
            input_ids=torch.zeros((rows, width), **long),
            prefill_positions=torch.arange(width, **long),
        )
        head = self.model.get_output_embeddings()
        vocab = getattr(head, "out_features", None) or head.weight.shape[0]
        # Per-call token masks, filled in place (a captured graph reads them where they are).
        state.eos_mask = torch.zeros(vocab, dtype=torch.bool, device=device)
        state.bos_row = torch.zeros(vocab, device=device)
        state.eos_row = torch.zeros(vocab, device=device)
        for t in (state.eos_mask, state.bos_row, state.eos_row):
            if t.is_cuda:
                torch._dynamo.mark_static_address(t)
        state.cache, state.base, state.seq2seq, state.hidden_ready = cache, base, seq2seq, False
        state.hidden = None
        if seq2seq:  # the encoder's output, where the decoder steps read it
            hidden_size = getattr(config, "d_model", None) or config.hidden_size
            state.hidden = torch.zeros((rows, width, hidden_size), dtype=self._dtype(), device=device)
            if state.hidden.is_cuda:
                torch._dynamo.mark_static_address(state.hidden)
        state.graphs, state.runs = {}, {}  # (plan, part) -> captured CUDA graph; runs before the capture
        self._states[key] = state
        while len(self._states) > self.max_states:
            self._states.popitem(last=False)
        return state

    @torch.inference_mode()
    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        plan: GreedyPlan,
        seq2seq: bool,
        ref_len: int,
        compiled: bool = True,
    ) -> torch.Tensor:
        """The new tokens, exactly as ``generate`` returns them after the prompt (seq2seq: after the start token).

        Args:
            input_ids: The prompts, padded (right for seq2seq, left for causal) to any width.
            attention_mask: Their mask.
            plan: What to generate (:func:`greedy_plan`).
            seq2seq: An encoder-decoder model.
            ref_len: The width ``generate`` would see (the longest prompt), which length settings count from.
            compiled: Use the compiled step, when there is one.
        """
        step = self._compiled if compiled and self._compiled is not None else self._step_eager
        rows, width = input_ids.shape
        n_new = plan.max_new_tokens
        state = self._state(rows, width, n_new, seq2seq, input_ids.device)
        base = state.base
        state.history.fill_(-1)
        state.cur.fill_(base)
        state.unfinished.fill_(True)
        state.input_ids.copy_(input_ids)
        state.mask[:, :width].copy_(attention_mask)
        # A tensor, not an int: a compiled step would otherwise be compiled again for each prompt length.
        state.len_offset.fill_((1 if seq2seq else ref_len) - base)
        state.plan, state.prefill_logits = plan, None
        state.eos = tuple(e for e in plan.eos)
        vocab = state.eos_mask.shape[0]
        state.eos_mask.zero_()
        state.eos_mask[[e for e in plan.eos if 0 <= e < vocab]] = True
        state.bos_row.fill_(-math.inf)
        if plan.forced_bos is not None:
            state.bos_row[plan.forced_bos] = 0
        state.eos_row.fill_(-math.inf)
        if plan.forced_eos is not None:
            state.eos_row[[e for e in plan.forced_eos if 0 <= e < vocab]] = 0
        if seq2seq:
            state.history[:, 0] = plan.start
        else:
            state.history[:, :width] = input_ids.masked_fill(attention_mask == 0, -1)
            state.position_offset.copy_((attention_mask == 0).sum(dim=1, keepdim=True))  # left padding
        graphs = compiled and self._compiled is not None and input_ids.is_cuda and self.cuda_graphs
        # The first token (encoder or prefill, then the first step, which for seq2seq also fills the cross-attention
        # cache), then the steps. On CUDA each is compiled, then captured as a CUDA graph and replayed.
        if graphs and self._compiled_first is not None and state.hidden_ready:
            # (The state's first call ran eagerly: the KV cache allocates its tensors then, outside any graph.)
            self._run(state, (plan, "first"), self._compiled_first, warm=1)
        else:
            self._first(state)
        state.hidden_ready = True
        if seq2seq:  # a replayed graph does not run the Python that marks the cross-attention cache as filled
            for layer in state.cache.is_updated:
                state.cache.is_updated[layer] = True
        done = 1
        while done < n_new:
            for _ in range(min(self.check_every, n_new - done)):
                if graphs:
                    self._run(state, (plan, "step"), step, warm=2)
                else:
                    step(state)
                done += 1
            if plan.eos and not bool(state.unfinished.any()):
                break
        return self._cut(state.history[:, base : base + done].clone(), plan)

    def _run(self, state: _State, key: tuple, fn: Any, warm: int) -> None:
        """Run ``fn(state)``: as a replay of its CUDA graph once ``fn`` has run ``warm`` times, captured then."""
        graph = state.graphs.get(key)
        if graph is not None:
            graph.replay()
            return
        runs = state.runs.get(key, 0)
        if runs < warm or key in state.graphs:  # warming up, or capture failed: run the compiled code
            state.runs[key] = runs + 1
            fn(state)
            return
        graph = state.graphs[key] = self._capture(state, fn)
        if graph is None:
            fn(state)
        else:
            graph.replay()

    def _first(self, state: _State) -> None:
        """Encoder (seq2seq) or prefill (causal), then the first decoder step."""
        width = state.input_ids.shape[1]
        mask = state.mask[:, :width]
        if state.seq2seq:
            hidden = self.model.get_encoder()(input_ids=state.input_ids, attention_mask=mask, return_dict=True)[0]
            state.hidden.copy_(hidden)
        else:
            out = self.model(  # every prompt position in one pass
                input_ids=state.input_ids,
                attention_mask=mask,
                position_ids=(torch.cumsum(mask, dim=1) - 1).clamp(min=0),
                **{self._cache_arg: state.cache},
                cache_position=state.prefill_positions,
                use_cache=True,
                return_dict=True,
            )
            state.prefill_logits = out.logits[:, -1, :]
        self._step_eager(state)
        state.prefill_logits = None

    def _capture(self, state: _State, fn: Any) -> Any:
        """A CUDA graph of ``fn(state)`` (captured, not run), or None when capture fails."""
        try:
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn(state)
            return graph
        except Exception as e:  # the compiled step still runs, one call a step
            torch.cuda.synchronize()
            logger.warning("could not capture the decode step as a CUDA graph (%s); it runs without one", e)
            self.cuda_graphs = False
            return None

    def _dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32  # pragma: no cover

    @staticmethod
    def _cut(new: torch.Tensor, plan: GreedyPlan) -> torch.Tensor:
        """Cut where ``generate`` stops: after the step at which the last row finished."""
        if not plan.eos:
            return new
        is_eos = torch.isin(new, torch.tensor(plan.eos, device=new.device))
        if not bool(is_eos.any(dim=1).all()):
            return new
        last = int(is_eos.int().argmax(dim=1).max()) + 1
        return new[:, :last]

    def _step_eager(self, state: Any) -> None:
        plan = state.plan
        cur = state.cur  # (1,): the history index the next token goes to
        rows = state.history.shape[0]
        if state.prefill_logits is not None:
            logits = state.prefill_logits
        else:
            last = state.history.index_select(1, cur - 1)  # (rows, 1)
            if state.seq2seq:
                out = self.model(
                    encoder_outputs=(state.hidden,),
                    attention_mask=state.mask,
                    decoder_input_ids=last,
                    **{self._cache_arg: state.cache},
                    cache_position=cur - 1,
                    use_cache=True,
                    return_dict=True,
                )
            else:
                out = self.model(
                    input_ids=last,
                    attention_mask=state.mask,
                    position_ids=(cur - 1) - state.position_offset,
                    **{self._cache_arg: state.cache},
                    cache_position=cur - 1,
                    use_cache=True,
                    return_dict=True,
                )
            logits = out.logits[:, -1, :]
        scores = logits.to(dtype=torch.float32, copy=True)
        vocab = scores.shape[-1]
        seen = state.history
        valid = (torch.arange(seen.shape[1], device=cur.device) < cur)[None, :] & (seen >= 0)
        n_gen = cur - state.base  # tokens generated so far, (1,)
        cur_len = cur + state.len_offset  # the length generate's processors see
        if plan.repetition_penalty != 1.0:
            ids = torch.where(valid, seen.clamp(max=vocab), vocab)
            present = torch.zeros(rows, vocab + 1, dtype=torch.bool, device=scores.device).scatter_(1, ids, True)
            penalised = torch.where(scores < 0, scores * plan.repetition_penalty, scores / plan.repetition_penalty)
            scores = torch.where(present[:, :vocab], penalised, scores)
        n = plan.no_repeat_ngram_size
        if n > 0 and seen.shape[1] >= n:
            windows = seen.unfold(1, n, 1)  # (rows, W, n)
            starts = torch.arange(windows.shape[1], device=cur.device)
            prefix_at = (cur - n + 1).clamp(min=0) + torch.arange(n - 1, device=cur.device)
            prefix = seen.index_select(1, prefix_at.clamp(max=seen.shape[1] - 1))  # (rows, n-1)
            matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)
            # A window over a causal prompt's padding (marked -1) is no n-gram of the row: the row alone has none.
            matches &= (starts <= cur - n)[None, :] & (cur_len >= n)[None, :] & (windows[..., 0] >= 0)
            banned_ids = torch.where(matches, windows[..., -1].clamp(max=vocab), vocab)
            banned = torch.zeros(rows, vocab + 1, dtype=torch.bool, device=scores.device).scatter_(1, banned_ids, True)
            scores = scores.masked_fill(banned[:, :vocab], -math.inf)
        if plan.min_length > 0:
            scores = torch.where(state.eos_mask[None, :] & (cur_len < plan.min_length)[:, None], -math.inf, scores)
        if plan.min_new_tokens > 0:
            scores = torch.where(state.eos_mask[None, :] & (n_gen < plan.min_new_tokens)[:, None], -math.inf, scores)
        if plan.forced_bos is not None:
            scores = torch.where(cur_len == 1, state.bos_row[None, :], scores)
        if plan.forced_eos is not None:
            scores = torch.where(n_gen == plan.max_new_tokens - 1, state.eos_row[None, :], scores)
        nxt = scores.argmax(dim=-1)
        nxt = torch.where(state.unfinished, nxt, plan.pad)
        state.history.index_copy_(1, cur, nxt[:, None])
        for e in state.eos:
            state.unfinished &= nxt != e
        cur += 1
