"""A faster decode loop for Qwen3-TTS that computes exactly what upstream computes.

Why this exists: upstream ``qwen-tts`` 0.1.1 runs two nested Hugging Face ``generate`` calls per
80 ms audio frame (the 28-layer talker, then 15 sub-steps of the 5-layer code predictor, each a
fresh ``generate`` with its own cache, mask building, logits-processor objects and output
bookkeeping).  On a CPU every part is bound by reading weights from memory, so the scaffolding
around the matrix-vector products is pure overhead; on a GPU it is launch overhead that CUDA graphs
remove.

What it does: :class:`FastGenerator` keeps upstream's public wrapper (text handling, prompt
building, voice-clone prompts, codec decode) and replaces only the innermost seam,
``talker.generate``, for the duration of one call.  The replacement

* runs the talker prefill through upstream's own forward (once per call, so its cost is irrelevant
  and the prompt positions/masks are upstream's by construction);
* then drives upstream's own decoder-layer modules directly, with a preallocated (static) KV cache,
  precomputed rotary tables and no per-step ``generate`` machinery, for both the talker step and
  the 15 code-predictor sub-steps;
* applies the same logits processing as ``transformers`` 4.57 does for these calls, in the same
  order and precision (float32 logits; repetition penalty, min-new-tokens EOS block and suppressed
  control ids for the talker; temperature, top-k, top-p and multinomial sampling when sampling).

Because the same modules run on the same inputs with the same tensor shapes, greedy decoding gives
bit-identical codes and waveforms, and sampling with the same seed draws the same random numbers
in the same order (``tests/test_fastpath.py`` checks both on tiny checkpoints).

Contract (what the engine integrates against)::

    fast = FastGenerator(qwen_model)            # a loaded qwen_tts.Qwen3TTSModel
    if FastGenerator.supports(qwen_model): ...  # False => use upstream's methods
    wavs, sr = fast.generate_voice_clone(text, language=..., voice_clone_prompt=..., **gen_kwargs)
    wavs, sr = fast.generate_custom_voice(text, speaker=..., language=..., instruct=..., **gen_kwargs)
    wavs, sr = fast.generate_voice_design(text, instruct=..., language=..., **gen_kwargs)

Every method also takes ``progress=`` (an ``audiobox.progress.ProgressFn``: a "synthesize" event,
frames done of ``max_new_tokens``, per generated frame),
``generators=[torch.Generator, ...]`` (one per row): row i then samples from its own generator
(:func:`pick_per_row`), so a row's draws do not depend on the other rows of the call, and
``budgets=[int, ...]``: row i stops where ``max_new_tokens=budgets[i]`` would stop it alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from audiobox.progress import ProgressEvent, ProgressFn

__all__ = ["FastGenerator", "TalkerResult"]


# Attention implementations whose decode-step inputs we reproduce exactly (sdpa takes boolean or no
# masks and decides causality itself; eager would need additive masks built the way HF builds them).
_SUPPORTED_ATTENTION = ("sdpa",)


@dataclass
class TalkerResult:
    """What upstream's ``Qwen3TTSForConditionalGeneration.generate`` reads from ``talker.generate``.

    ``hidden_states`` mirrors the Hugging Face layout upstream indexes into: one entry per forward
    call, each ``((last_hidden_state,), codec_ids_or_None)``; the prefill entry carries no codes.
    """

    hidden_states: tuple
    sequences: Any = None


class _StaticKV:
    """Preallocated key/value buffers with the ``Cache.update`` interface the layers call.

    Buffers are written in place and the layers get views of the filled prefix, so a step neither
    concatenates nor reallocates the cache.  Capacity starts at what the call is likely to need and
    doubles when exceeded (rare), so a large ``max_new_tokens`` does not reserve memory up front.
    """

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int, dtype, device):
        import torch

        shape = (batch, kv_heads, capacity, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.length = 0

    def _grow(self, needed: int) -> None:
        import torch

        capacity = self.keys[0].shape[2]
        while capacity < needed:
            capacity *= 2
        for buffers in (self.keys, self.values):
            for index, old in enumerate(buffers):
                new = torch.empty(
                    (*old.shape[:2], capacity, old.shape[3]), dtype=old.dtype, device=old.device
                )
                new[:, :, : self.length].copy_(old[:, :, : self.length])
                buffers[index] = new

    def load(self, layer: int, keys, values) -> None:
        filled = keys.shape[2]
        if filled > self.keys[layer].shape[2]:
            self._grow(filled)
        self.keys[layer][:, :, :filled].copy_(keys)
        self.values[layer][:, :, :filled].copy_(values)

    def update(self, key_states, value_states, layer_idx: int, cache_kwargs: dict | None = None):
        start = self.length
        stop = start + key_states.shape[2]
        if stop > self.keys[layer_idx].shape[2]:
            self._grow(stop)
        self.keys[layer_idx][:, :, start:stop].copy_(key_states)
        self.values[layer_idx][:, :, start:stop].copy_(value_states)
        return self.keys[layer_idx][:, :, :stop], self.values[layer_idx][:, :, :stop]


class _LogitsRules:
    """The logits processing ``transformers`` applies for one upstream ``generate`` call.

    Kept as plain tensor ops so a decode step costs a handful of kernel calls; the order and the
    float32 precision follow ``GenerationMixin._get_logits_processor`` for the options upstream
    passes (it never sets any other processor).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        device,
        do_sample: bool,
        temperature: float | None,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float | None = None,
        suppress_tokens: list | None = None,
        eos_token_ids: list | None = None,
        min_new_tokens: int = 0,
    ):
        import torch

        self.do_sample = bool(do_sample)
        self.temperature = (
            temperature if (do_sample and temperature is not None and temperature != 1.0) else None
        )
        self.top_k = None
        if do_sample and top_k is not None and top_k != 0:
            self.top_k = min(max(int(top_k), 1), vocab_size)
        self.top_p = float(top_p) if (do_sample and top_p is not None and top_p < 1.0) else None
        self.repetition_penalty = (
            float(repetition_penalty)
            if repetition_penalty is not None and repetition_penalty != 1.0
            else None
        )
        vocab = torch.arange(vocab_size, device=device)
        self.min_new_tokens = int(min_new_tokens or 0)
        self.eos_mask = None
        if eos_token_ids and self.min_new_tokens > 0:
            self.eos_mask = torch.isin(vocab, torch.tensor(eos_token_ids, device=device))
        self.suppress_mask = None
        if suppress_tokens:
            self.suppress_mask = torch.isin(vocab, torch.tensor(suppress_tokens, device=device))

    def pick(self, logits, history=None, generated: int = 0, generator=None):
        """Next token ids (B,) from float32 ``logits`` (B, V); ``history`` (B, n) are earlier picks.

        ``generator`` draws the samples (the global torch generator when None), so a request in a
        shared batch keeps its own seeded stream.
        """
        import torch

        scores = logits
        if self.repetition_penalty is not None and history is not None and history.shape[1] > 0:
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, history, True)
            penalised = torch.where(
                scores < 0, scores * self.repetition_penalty, scores / self.repetition_penalty
            )
            scores = torch.where(seen, penalised, scores)
        if self.eos_mask is not None and generated < self.min_new_tokens:
            scores = torch.where(self.eos_mask, float("-inf"), scores)
        if self.suppress_mask is not None:
            scores = torch.where(self.suppress_mask, float("-inf"), scores)
        if not self.do_sample:
            return torch.argmax(scores, dim=-1)
        if self.temperature is not None:
            scores = scores / self.temperature
        if self.top_k is not None:
            kth_best = torch.topk(scores, self.top_k)[0][..., -1, None]
            scores = scores.masked_fill(scores < kth_best, float("-inf"))
        if self.top_p is not None:
            ascending, order = torch.sort(scores, descending=False)
            cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
            drop_sorted = cumulative <= (1 - self.top_p)
            drop_sorted[..., -1:] = False
            drop = drop_sorted.scatter(1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        probs = torch.nn.functional.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def pick_per_row(rules, logits, generators, history=None, generated: int = 0):
    """One pick per row, row i drawing from ``generators[i]`` (and with ``rules[i]`` when ``rules``
    is a list): a row's random numbers are then those it would draw alone, whatever shares its batch.

    Used by batched whole takes (one seed per item) and by the stream engine (one per request)."""
    import torch

    per_row = rules if isinstance(rules, (list, tuple)) else [rules] * len(generators)
    if len(generators) == 1:  # one row (every take of `speak`): no slicing and joining
        return per_row[0].pick(logits, history, generated, generators[0])
    return torch.cat(
        [
            rule.pick(
                logits[i : i + 1], None if history is None else history[i : i + 1], generated, generator
            )
            for i, (rule, generator) in enumerate(zip(per_row, generators, strict=True))
        ]
    )


def _row_cos_sin(table_cos, table_sin, positions):
    """Rotary (cos, sin) for one new token per row, shaped like upstream's per-layer input."""
    return table_cos[positions].unsqueeze(1), table_sin[positions].unsqueeze(1)


class FastGenerator:
    """Upstream-identical Qwen3-TTS synthesis with a lean static-cache decode loop.

    Construct it once per loaded model; calls are serialised (the patch of ``talker.generate`` is
    per model object), which matches how the engine uses one model at a time.
    """

    def __init__(self, qwen_model):
        if not self.supports(qwen_model):
            raise ValueError("FastGenerator does not support this model; use the upstream methods")
        self.qwen = qwen_model
        self.model = qwen_model.model
        self.talker = self.model.talker
        self._lock = threading.Lock()
        self._rope_cache: dict = {}

    # ------------------------------------------------------------------ capability check
    @staticmethod
    def supports(qwen_model) -> bool:
        """True when this loop reproduces upstream exactly for ``qwen_model``.

        Requires the qwen-tts 0.1.x model layout, sdpa attention (the masks we build are
        the ones sdpa receives) and no sliding-window attention.
        """
        try:
            model = qwen_model.model
            talker = model.talker
            predictor = talker.code_predictor
            talker_cfg = talker.config
            predictor_cfg = predictor.config
            needed = (
                talker.model.layers,
                talker.model.norm,
                talker.model.rotary_emb,
                talker.codec_head,
                predictor.model.layers,
                predictor.model.codec_embedding,
                predictor.lm_head,
                predictor.small_to_mtp_projection,
            )
        except AttributeError:
            return False
        if any(part is None for part in needed):
            return False
        for cfg in (talker_cfg, predictor_cfg):
            if getattr(cfg, "_attn_implementation", "sdpa") not in _SUPPORTED_ATTENTION:
                return False
            if getattr(cfg, "sliding_window", None) is not None:
                return False
        if getattr(predictor_cfg, "layer_types", None) and any(
            kind != "full_attention" for kind in predictor_cfg.layer_types
        ):
            return False
        scaling = getattr(talker_cfg, "rope_scaling", None) or {}
        if scaling.get("rope_type", "default") != "default" or "mrope_section" not in scaling:
            return False
        return True

    # ------------------------------------------------------------------ public API (upstream's)
    def generate_voice_clone(
        self,
        text,
        language=None,
        ref_audio=None,
        ref_text=None,
        x_vector_only_mode: bool = False,
        voice_clone_prompt=None,
        non_streaming_mode: bool = False,
        progress: ProgressFn | None = None,
        generators: list | None = None,
        budgets: list | None = None,
        **gen_kwargs,
    ):
        """Same arguments and return value as ``Qwen3TTSModel.generate_voice_clone``."""
        with self._fast_talker(progress, generators, budgets):
            return self.qwen.generate_voice_clone(
                text,
                language=language,
                ref_audio=ref_audio,
                ref_text=ref_text,
                x_vector_only_mode=x_vector_only_mode,
                voice_clone_prompt=voice_clone_prompt,
                non_streaming_mode=non_streaming_mode,
                **gen_kwargs,
            )

    def generate_custom_voice(
        self,
        text,
        speaker,
        language=None,
        instruct=None,
        non_streaming_mode: bool = True,
        progress: ProgressFn | None = None,
        generators: list | None = None,
        budgets: list | None = None,
        **gen_kwargs,
    ):
        """Same arguments and return value as ``Qwen3TTSModel.generate_custom_voice``."""
        with self._fast_talker(progress, generators, budgets):
            return self.qwen.generate_custom_voice(
                text,
                speaker=speaker,
                language=language,
                instruct=instruct,
                non_streaming_mode=non_streaming_mode,
                **gen_kwargs,
            )

    def generate_voice_design(
        self,
        text,
        instruct,
        language=None,
        non_streaming_mode: bool = True,
        progress: ProgressFn | None = None,
        generators: list | None = None,
        budgets: list | None = None,
        **gen_kwargs,
    ):
        """Same arguments and return value as ``Qwen3TTSModel.generate_voice_design``."""
        with self._fast_talker(progress, generators, budgets):
            return self.qwen.generate_voice_design(
                text,
                instruct=instruct,
                language=language,
                non_streaming_mode=non_streaming_mode,
                **gen_kwargs,
            )

    # ------------------------------------------------------------------ the seam
    @contextmanager
    def _fast_talker(
        self, progress: ProgressFn | None, generators: list | None = None, budgets: list | None = None
    ) -> Iterator[None]:
        """Route ``talker.generate`` to our loop for one call (instance attribute, removed after)."""

        def fast_generate(**kwargs):
            return self.talker_generate(progress=progress, generators=generators, budgets=budgets, **kwargs)

        with self._lock:
            self.talker.__dict__["generate"] = fast_generate
            try:
                yield
            finally:
                self.talker.__dict__.pop("generate", None)

    def capture_talker_inputs(self, method: str, *args, **kwargs) -> dict:
        """Run upstream's ``method`` (e.g. ``generate_custom_voice``) up to the talker loop and
        return the keyword arguments it would pass to ``talker.generate`` (prompt embeddings,
        masks, sampling options), without generating: the streaming engine runs the loop itself."""

        class _Captured(Exception):
            def __init__(self, captured):
                super().__init__("captured")
                self.captured = captured

        def capture(**talker_kwargs):
            raise _Captured(talker_kwargs)

        with self._lock:
            self.talker.__dict__["generate"] = capture
            try:
                getattr(self.qwen, method)(*args, **kwargs)
            except _Captured as done:
                return done.captured
            finally:
                self.talker.__dict__.pop("generate", None)
        raise RuntimeError(f"{method} returned without calling talker.generate")

    def talker_cos_sin(self, capacity: int, dtype, device):
        """The talker's rotary tables for positions 0..capacity-1 (grown and cached as needed)."""
        return self._rope_tables(self.talker.model.rotary_emb, capacity, dtype, device, True)

    def _rope_tables(self, rotary, capacity: int, dtype, device, multimodal: bool):
        """cos/sin for positions 0..capacity-1 from upstream's own rotary module, cached per model.

        Each entry depends only on its own position (one product, then cos/sin), so a table lookup
        equals what upstream computes per step.  For the talker all three M-RoPE position streams are
        equal (text only), so stream 0 holds the whole rotation.
        """
        import torch

        key = (id(rotary), dtype, str(device), multimodal)
        cached = self._rope_cache.get(key)
        if cached is not None and cached[0].shape[0] >= capacity:
            return cached
        size = max(capacity, 256)
        probe = torch.zeros(1, dtype=dtype, device=device)
        positions = torch.arange(size, device=device)
        if multimodal:
            cos, sin = rotary(probe, positions.view(1, 1, -1).expand(3, 1, -1))
            cos, sin = cos[0, 0], sin[0, 0]
        else:
            cos, sin = rotary(probe, positions.view(1, -1))
            cos, sin = cos[0], sin[0]
        self._rope_cache[key] = (cos, sin)
        return cos, sin

    # ------------------------------------------------------------------ the decode loop
    def talker_generate(
        self,
        *,
        inputs_embeds,
        attention_mask,
        trailing_text_hidden,
        tts_pad_embed,
        max_new_tokens: int,
        progress: ProgressFn | None = None,
        generators: list | None = None,
        budgets: list | None = None,
        **options,
    ) -> TalkerResult:
        """Drop-in for ``talker.generate`` as upstream calls it; returns what upstream reads.

        ``options`` are upstream's sampling and stopping options (see :meth:`logits_rules`);
        ``generators`` (one per row) give each row its own random stream, else the global one is used;
        ``budgets`` (one per row, at most ``max_new_tokens``) stop each row where ``max_new_tokens``
        would stop it alone: its last picked token becomes the end code, so upstream cuts it there."""
        import torch

        talker = self.talker
        core = talker.model
        cfg = talker.config
        device = inputs_embeds.device
        dtype = inputs_embeds.dtype
        batch, prompt_len, _ = inputs_embeds.shape

        talker_rules, predictor_rules, eos_ids = self.logits_rules(device, **options)
        pad_id = eos_ids[0] if eos_ids else None
        talker_pick, predictor_pick = talker_rules.pick, predictor_rules.pick
        if generators is not None:
            if len(generators) != batch:
                raise ValueError(f"{len(generators)} generators for {batch} rows")

            def talker_pick(logits, history, generated):
                return pick_per_row(talker_rules, logits, generators, history, generated)

            def predictor_pick(logits):
                return pick_per_row(predictor_rules, logits, generators)

        row_limit = None
        if budgets is not None:
            if len(budgets) != batch or max(budgets) > max_new_tokens or pad_id is None:
                raise ValueError(f"budgets {budgets} do not fit {batch} rows of at most {max_new_tokens}")
            row_limit = torch.tensor(budgets, device=device)

        with torch.inference_mode():
            if attention_mask is None:
                attention_mask = torch.ones(batch, prompt_len, dtype=torch.long, device=device)
            prefill, prefill_cache = self.prefill(
                inputs_embeds, attention_mask, trailing_text_hidden, tts_pad_embed
            )
            capacity = prompt_len + min(max_new_tokens, 512) + 1
            kv_heads = cfg.num_key_value_heads
            head_dim = getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
            cache = _StaticKV(len(core.layers), batch, kv_heads, capacity, head_dim, dtype, device)
            for index, layer_cache in enumerate(prefill_cache.layers):
                cache.load(index, layer_cache.keys, layer_cache.values)
            cache.length = prompt_len

            padded = bool((attention_mask == 0).any())
            real_tokens = attention_mask.sum(dim=1)  # rope position of the next token, per row
            key_mask = None
            if padded:
                key_mask = torch.zeros(
                    batch, 1, 1, prompt_len + max_new_tokens + 1, dtype=torch.bool, device=device
                )
                key_mask[:, 0, 0, :prompt_len] = attention_mask.bool()

            talker_cos, talker_sin = self._rope_tables(
                core.rotary_emb, prompt_len + max_new_tokens + 1, dtype, device, True
            )

            past_hidden = prefill.past_hidden
            steps = [((prefill.past_hidden,), None)]
            logits = prefill.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            history = torch.empty(batch, 0, dtype=torch.long, device=device)
            token = talker_pick(logits, history, 0)
            unfinished = torch.ones(batch, dtype=torch.bool, device=device)
            eos_tensor = torch.tensor(eos_ids, device=device) if eos_ids else None
            if eos_tensor is not None:
                unfinished &= ~torch.isin(token, eos_tensor)
            history = token[:, None]
            frame = 0
            trailing_len = trailing_text_hidden.shape[1]

            while history.shape[1] < max_new_tokens and bool(unfinished.any()):
                first_hidden = talker.get_input_embeddings()(token[:, None])
                predicted = self.predict_codes(past_hidden, first_hidden, predictor_pick)
                codec_ids = torch.cat((token[:, None], predicted), dim=-1)
                step_embeds = self.step_embeddings(first_hidden, predicted)
                if frame < trailing_len:
                    step_embeds = step_embeds + trailing_text_hidden[:, frame].unsqueeze(1)
                else:
                    step_embeds = step_embeds + tts_pad_embed

                position = cache.length
                if key_mask is not None:
                    key_mask[:, 0, 0, position] = True
                    mask = key_mask[..., : position + 1]
                else:
                    mask = None
                hidden = self.talker_step(
                    step_embeds, cache, mask, talker_cos, talker_sin, real_tokens + frame
                )
                past_hidden = hidden[:, -1:, :]
                steps.append(((hidden,), codec_ids))
                frame += 1
                if progress is not None:
                    progress(ProgressEvent("synthesize", done=frame, total=max_new_tokens, unit="frames"))

                logits = talker.codec_head(hidden)[:, -1, :].to(copy=True, dtype=torch.float32)
                token = talker_pick(logits, history, history.shape[1])
                if row_limit is not None:  # a row alone would stop after this token: never frame it
                    token = torch.where(
                        row_limit <= history.shape[1] + 1, torch.full_like(token, pad_id), token
                    )
                if pad_id is not None:
                    token = torch.where(unfinished, token, torch.full_like(token, pad_id))
                    unfinished &= ~torch.isin(token, eos_tensor)
                history = torch.cat((history, token[:, None]), dim=1)

        return TalkerResult(hidden_states=tuple(steps), sequences=history)

    def prefill(self, inputs_embeds, attention_mask, trailing_text_hidden, tts_pad_embed):
        """The prompt pass through upstream's own talker forward; returns its output and cache."""
        import torch
        from transformers.cache_utils import DynamicCache

        prompt_len = inputs_embeds.shape[1]
        cache = DynamicCache()
        output = self.talker(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(prompt_len, device=inputs_embeds.device),
            trailing_text_hidden=trailing_text_hidden,
            tts_pad_embed=tts_pad_embed,
            return_dict=True,
        )
        return output, cache

    def logits_rules(
        self,
        device,
        *,
        min_new_tokens: int = 2,
        do_sample: bool = True,
        top_k: int | None = 50,
        top_p: float | None = 1.0,
        temperature: float | None = 0.9,
        subtalker_dosample: bool = True,
        subtalker_top_k: int | None = 50,
        subtalker_top_p: float | None = 1.0,
        subtalker_temperature: float | None = 0.9,
        eos_token_id=None,
        repetition_penalty: float | None = None,
        suppress_tokens: list | None = None,
        **_ignored,
    ):
        """(talker rules, code-predictor rules, EOS ids) for the options upstream passes."""
        eos_ids = eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]
        eos_ids = [int(e) for e in eos_ids if e is not None]
        talker_rules = _LogitsRules(
            vocab_size=self.talker.config.vocab_size,
            device=device,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            suppress_tokens=suppress_tokens,
            eos_token_ids=eos_ids,
            min_new_tokens=min_new_tokens,
        )
        predictor_rules = _LogitsRules(
            vocab_size=self.talker.code_predictor.config.vocab_size,
            device=device,
            do_sample=subtalker_dosample,
            temperature=subtalker_temperature,
            top_k=subtalker_top_k,
            top_p=subtalker_top_p,
        )
        return talker_rules, predictor_rules, eos_ids

    def talker_step(self, step_embeds, cache, mask, cos_table, sin_table, positions):
        """One talker decode step for every row: the new token's key/value go to ``cache`` at
        ``cache.length``; ``positions`` (B,) are the rows' rotary positions.  Returns the normed
        hidden state (B, 1, H)."""
        core = self.talker.model
        cos, sin = _row_cos_sin(cos_table, sin_table, positions)
        cos3 = cos.unsqueeze(0).expand(3, -1, -1, -1)
        sin3 = sin.unsqueeze(0).expand(3, -1, -1, -1)
        position = cache.length
        hidden = step_embeds
        for layer in core.layers:
            hidden = layer(
                hidden,
                attention_mask=mask,
                past_key_values=cache,
                position_embeddings=(cos3, sin3),
                use_cache=True,
            )[0]
        cache.length = position + 1
        return core.norm(hidden)

    def step_embeddings(self, first_hidden, predicted):
        """The talker input of one frame (B, 1, H): the sum of the embeddings of its 16 codes
        (``first_hidden`` embeds the first code, ``predicted`` (B, 15) holds the others)."""
        import torch

        predictor = self.talker.code_predictor
        parts = [first_hidden] + [
            predictor.model.codec_embedding[i](predicted[:, i : i + 1]) for i in range(predicted.shape[1])
        ]
        return torch.cat(parts, dim=1).sum(1, keepdim=True)

    def predict_codes(self, past_hidden, first_hidden, pick: Callable):
        """The 15 code-predictor sub-steps of one frame: codes for groups 1..15, shape (B, 15).

        ``pick(logits)`` turns float32 logits (B, V) into codes (B,): one rule for the whole batch,
        or one per row when the rows are separate requests."""
        import torch

        predictor = self.talker.code_predictor
        core = predictor.model
        cfg = predictor.config
        batch = past_hidden.shape[0]
        sub_steps = cfg.num_code_groups - 1
        dtype = past_hidden.dtype
        device = past_hidden.device
        head_dim = getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
        cache = _StaticKV(
            len(core.layers), batch, cfg.num_key_value_heads, sub_steps + 1, head_dim, dtype, device
        )
        cos_table, sin_table = self._rope_tables(core.rotary_emb, sub_steps + 1, dtype, device, False)

        hidden = predictor.small_to_mtp_projection(torch.cat((past_hidden, first_hidden), dim=1))
        positions = 2
        codes = []
        for step in range(sub_steps):
            start = cache.length
            cos = cos_table[start : start + positions].unsqueeze(0)
            sin = sin_table[start : start + positions].unsqueeze(0)
            for layer in core.layers:
                hidden = layer(
                    hidden,
                    attention_mask=None,
                    past_key_values=cache,
                    position_embeddings=(cos, sin),
                    use_cache=True,
                )[0]
            cache.length = start + positions
            hidden = core.norm(hidden)
            logits = predictor.lm_head[step](hidden)[:, -1, :].to(copy=True, dtype=torch.float32)
            code = pick(logits)
            codes.append(code)
            if step + 1 < sub_steps:
                hidden = predictor.small_to_mtp_projection(core.codec_embedding[step](code[:, None]))
                positions = 1
        return torch.stack(codes, dim=1)
