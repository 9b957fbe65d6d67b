"""Streaming speech: audio comes out while frames are still being generated.

:class:`StreamEngine` owns one loaded model and runs its decode loop in a thread of its own.  Every
submitted request becomes a row of that loop: a request arriving while others generate is prefilled
on its own and then joins the running batch at the next step (continuous batching), so the talker
and the code predictor read their weights once per step for all rows.  A row leaves the batch at
its end token, at its frame budget, or when its consumer cancels (a client that hung up).

Audio: each row's codes are decoded in chunks on a separate decode thread, so decoding one chunk
overlaps the generation of the next frames; chunks of several rows that fall due at the same step
with the same length go through the codec's convolutions as one batch.  The codec decoder is
causal: its sliding-window transformer keeps its key/value cache from chunk to chunk (so it sees
exactly the history it sees in a whole-take decode) and its convolutions keep the few inputs of the
previous chunk they need, so no frame is decoded twice.  The joined chunks therefore equal the
decode of the whole take up to float rounding (``tests/test_stream.py`` measures it on the tiny
checkpoints).

The loop is :class:`audiobox.tts.fastpath.FastGenerator`'s (the same modules, logits rules and
order of random draws; each request samples from its own seeded generator), which requires sdpa
attention.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from audiobox.errors import UserError
from audiobox.tts.fastpath import pick_per_row
from audiobox.tts.runtime import quiet_stdout
from audiobox.tts.settings import GenerationSettings
from audiobox.tts.synth import Synthesizer, VoiceSpec

# Frames of an ICL reference's transformer output the codec's convolutions start from.  Measured on
# the tiny codec (same kernels, strides and dilations as the real one): 4 frames leave a 0.17 jump
# at the seam, 8 frames match the whole-take decode within 1.3e-5.
CONV_CONTEXT = 8


@dataclass(frozen=True)
class StreamOptions:
    first_chunk_frames: int = 1  # first audio after one frame (80 ms of audio): docs/benchmarks.md §6b
    chunk_frames: int = 12  # later chunks: fewer, larger codec calls (a little less CPU), later audio
    max_batch: int = 8  # rows stepped together; later requests wait for a free row

    def check(self) -> None:
        if not 1 <= self.first_chunk_frames <= 300 or not 1 <= self.chunk_frames <= 300:
            raise UserError("stream chunk sizes must be between 1 and 300 frames")
        if not 1 <= self.max_batch <= 64:
            raise UserError("the stream batch must hold between 1 and 64 requests")


@dataclass(frozen=True)
class StreamJob:
    """One take to stream: the same inputs as :meth:`Synthesizer.generate` for one row."""

    text: str
    voice: VoiceSpec
    language: str
    settings: GenerationSettings
    seed: int


@dataclass
class StreamStats:
    """What happened to one streamed take (filled in as it runs)."""

    submitted: float = field(default_factory=time.perf_counter)
    first_audio_sec: float | None = None  # submit -> first chunk of audio ready
    frames: int = 0
    samples: int = 0
    elapsed_sec: float = 0.0
    finish: str = "running"  # eos | budget | cancelled | error


class StreamHandle:
    """The consumer's side of one streamed take: iterate for float32 chunks; ``cancel()`` stops it."""

    def __init__(self, job: StreamJob, sample_rate: int):
        self.job = job
        self.sample_rate = sample_rate
        self.stats = StreamStats()
        self.cancelled = threading.Event()
        self._chunks: queue.Queue = queue.Queue()

    def cancel(self) -> None:
        """Stop generating this take (the engine drops its row at the next step)."""
        self.cancelled.set()

    def _put_audio(self, samples: np.ndarray) -> None:
        if self.stats.first_audio_sec is None:
            self.stats.first_audio_sec = time.perf_counter() - self.stats.submitted
        self.stats.samples += len(samples)
        self._chunks.put(samples)

    def _finish(self, how: str, error: BaseException | None = None) -> None:
        if self.stats.finish != "running":
            return
        self.stats.finish = how
        self.stats.elapsed_sec = time.perf_counter() - self.stats.submitted
        self._chunks.put(error if error is not None else _END)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            item = self._chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def read_all(self) -> np.ndarray:
        """The whole take (blocks until it ends)."""
        parts = list(self)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


_END = object()


class _ChunkDecoder:
    """Collects one row's codes and hands them to the decoder in chunks.

    The first chunk is short (first audio early); later chunks end on engine steps that are
    multiples of ``chunk_frames``, the same steps for every row, so rows that joined at different
    times still have chunks of one shape due together and share a codec call.
    """

    def __init__(self, options: StreamOptions):
        self.options = options
        self.codes: list = []
        self.emitted = 0

    def add(self, frame_codes) -> None:
        self.codes.append(frame_codes)

    def task(self, final: bool, step: int):
        """The next chunk of codes (n, Q) when one is due after engine step ``step``, else None."""
        import torch

        pending = len(self.codes) - self.emitted
        if pending <= 0:
            return None
        if self.emitted == 0:
            due = pending >= self.options.first_chunk_frames
        else:
            chunk = self.options.chunk_frames
            due = step % chunk == 0 and pending >= max(1, chunk // 2) or pending >= 2 * chunk
        if not (due or final):
            return None
        codes = torch.stack(self.codes[self.emitted :])
        self.emitted = len(self.codes)
        return codes


class CodecStream:
    """Incremental decode of one take's codes with upstream's codec decoder modules.

    The decoder is quantizer -> causal conv (kernel 3) -> sliding-window transformer -> upsampling
    convolutions.  The transformer runs with a key/value cache across chunks and positions that
    continue, as in one whole-take pass; the convolutions keep the input tails they need in
    ``conv_state`` (see :class:`ChunkRenderer`).  ``prefix`` codes (an ICL clone's reference) are
    history, never emitted, as upstream decodes reference + new codes together and cuts the
    reference part: the transformer sees all of it, the convolutions its last
    :data:`CONV_CONTEXT` frames.
    """

    def __init__(self, decoder, renderer: ChunkRenderer, prefix=None):
        from transformers.cache_utils import DynamicCache

        self.decoder = decoder
        self.device = next(decoder.parameters()).device
        self.cache = DynamicCache(config=decoder.pre_transformer.config)
        self.position = 0
        self.code_tail = None  # the last 2 frames of codes, context for the kernel-3 conv
        self.conv_state = None  # the convolutions' input tails; None: silence before the take
        if prefix is not None and len(prefix):
            history = self.advance(prefix)
            renderer.render([self], history[..., -CONV_CONTEXT:])  # its audio is dropped

    def advance(self, codes):
        """Run ``codes`` (n, Q) through the stateful head (quantizer, conv, cached transformer);
        return what the convolutions render, (1, C, n)."""
        import torch

        decoder = self.decoder
        new = codes.to(self.device, torch.long).clamp(min=0).T.unsqueeze(0)  # (1, Q, n)
        count = new.shape[-1]
        window = new if self.code_tail is None else torch.cat((self.code_tail, new), dim=-1)
        self.code_tail = window[..., -2:]
        hidden = decoder.pre_conv(decoder.quantizer.decode(window))[..., -count:].transpose(1, 2)
        hidden = decoder.pre_transformer(
            inputs_embeds=hidden,
            past_key_values=self.cache,
            use_cache=True,
            cache_position=torch.arange(self.position, self.position + count, device=hidden.device),
        ).last_hidden_state.permute(0, 2, 1)
        self.position += count
        return hidden


class _TailConv:
    """Wraps one of the codec's causal convolutions so that it continues from the inputs it saw in
    the previous chunk (``tail``, batch-first) instead of the zeros a whole-take pass pads with.

    A causal convolution of span K needs the K - 1 inputs before a chunk; a transposed one of kernel
    k and stride r needs the ceil((k - r) / r) inputs whose outputs overlap the chunk's.  Zeros
    stand for the inputs before the take, which is exactly what the whole-take pass computes.
    """

    def __init__(self, module, transposed: bool):
        conv = module.conv
        self.conv = conv
        self.transposed = transposed
        if transposed:
            kernel, stride = conv.kernel_size[0], conv.stride[0]
            self.stride = stride
            self.keep = -(-(kernel - stride) // stride)
        else:
            if conv.stride[0] != 1:
                raise UserError("this codec has a strided causal convolution; streaming cannot continue it")
            self.keep = module.kernel_size - 1
        self.channels = conv.in_channels
        self.tail = None

    def zeros(self, rows: int):
        import torch

        weight = self.conv.weight
        return torch.zeros(rows, self.channels, self.keep, dtype=weight.dtype, device=weight.device)

    def __call__(self, hidden):
        import torch

        count = hidden.shape[-1]
        joined = torch.cat((self.tail, hidden), dim=-1) if self.keep else hidden
        self.tail = joined[..., joined.shape[-1] - self.keep :].clone()  # a view would keep all of `joined`
        out = self.conv(joined)
        if self.transposed:  # the outputs of the new inputs, without the overlap the next chunk adds to
            start = self.keep * self.stride
            return out[..., start : start + count * self.stride].contiguous()
        return out.contiguous()


class _Snake:
    """Upstream's SnakeBeta activation, x + sin(a x)^2 / b, with exp(alpha) and 1 / (exp(beta) + eps)
    worked out once instead of at every call and the large tensors updated in place: the same values
    to the last bit, and a 12-frame render took 22 % less time (docs/benchmarks.md §6b)."""

    def __init__(self, module):
        import torch

        with torch.no_grad():
            self.alpha = torch.exp(module.alpha)[None, :, None]
            self.inverse_beta = (1.0 / (torch.exp(module.beta) + module.no_div_by_zero))[None, :, None]

    def __call__(self, hidden):
        wave = (hidden * self.alpha).sin_()
        return wave.mul_(wave).mul_(self.inverse_beta).add_(hidden)


class ChunkRenderer:
    """The codec's upsampling convolutions (everything after its transformer), chunk by chunk.

    A copy of upstream's module tree shares its weights but has every causal convolution wrapped in
    a :class:`_TailConv`, so a chunk is rendered from its own frames only and joins the previous one
    as in a whole-take pass.  Rows of one call are independent: chunks of the same length from
    several streams are rendered together, each with its own tails.
    """

    def __init__(self, decoder):
        from qwen_tts.core.tokenizer_12hz import modeling_qwen3_tts_tokenizer_v2 as codec

        self.convs: list[_TailConv] = []
        self.kinds = {
            codec.Qwen3TTSTokenizerV2CausalConvNet: False,
            codec.Qwen3TTSTokenizerV2CausalTransConvNet: True,
        }
        self.snake = codec.SnakeBeta
        self.stages = [self._wrapped(block) for blocks in decoder.upsample for block in blocks]
        self.stages += [self._wrapped(block) for block in decoder.decoder]

    def _wrapped(self, module):
        import copy

        if type(module) in self.kinds:
            conv = _TailConv(module, self.kinds[type(module)])
            self.convs.append(conv)
            return conv
        if type(module) is self.snake:
            return _Snake(module)
        if not module._modules:
            return module
        clone = copy.copy(module)  # the same parameters; children replaced below
        clone._modules = {name: self._wrapped(child) for name, child in module._modules.items()}
        return clone

    def render(self, streams: list[CodecStream], hidden):
        """Waveforms (B, n * 1920) of ``hidden`` (B, C, n), row i continuing ``streams[i]``."""
        import torch

        for index, conv in enumerate(self.convs):
            conv.tail = torch.cat(
                [conv.zeros(1) if s.conv_state is None else s.conv_state[index] for s in streams]
            )
        wav = hidden
        for stage in self.stages:
            wav = stage(wav)
        for row, stream in enumerate(streams):
            stream.conv_state = [conv.tail[row : row + 1] for conv in self.convs]
        for conv in self.convs:
            conv.tail = None
        return wav.clamp(min=-1, max=1)[:, 0]


class _Row:
    """One request inside the running batch."""

    def __init__(self, handle: StreamHandle, captured: dict, engine: StreamEngine):
        import torch

        fast = engine.fast
        self.handle = handle
        self.device = engine.device
        self.talker_rules, self.predictor_rules, self.eos_ids = fast.logits_rules(self.device, **captured)
        self.max_new_tokens = int(captured["max_new_tokens"])
        self.trailing = captured["trailing_text_hidden"]  # (1, T, H)
        self.pad_embed = captured["tts_pad_embed"]  # (1, 1, H)
        self.generator = torch.Generator(device=self.device).manual_seed(handle.job.seed)
        prompt = captured["inputs_embeds"]
        mask = captured["attention_mask"]
        if mask is None:
            mask = torch.ones(prompt.shape[:2], dtype=torch.long, device=self.device)
        output, self.prefill_cache = fast.prefill(prompt, mask, self.trailing, self.pad_embed)
        self.prompt_len = prompt.shape[1]
        self.past_hidden = output.past_hidden  # (1, 1, H)
        self.history = torch.empty(1, 0, dtype=torch.long, device=self.device)
        self.frame = 0
        self.token = self.pick(output.logits[:, -1, :])
        self.decoder = _ChunkDecoder(engine.options)

    def pick(self, logits):
        import torch

        logits = logits.to(copy=True, dtype=torch.float32)
        token = self.talker_rules.pick(logits, self.history, self.history.shape[1], self.generator)
        self.history = torch.cat((self.history, token[:, None]), dim=1)
        return token

    @property
    def ended(self) -> str | None:
        if self.handle.cancelled.is_set():
            return "cancelled"
        if int(self.token[0]) in self.eos_ids:
            return "eos"
        if self.history.shape[1] >= self.max_new_tokens:
            return "budget"
        return None

    def trailing_embed(self):
        if self.frame < self.trailing.shape[1]:
            return self.trailing[:, self.frame].unsqueeze(1)
        return self.pad_embed


class _BatchKV:
    """Key/value buffers of the running rows, with the ``Cache.update`` interface the layers call.

    Rows join and leave between steps.  Slots are shared (every row writes its next key at slot
    ``length``); a row's prompt occupies the slots just before it and ``valid`` masks the rest, so
    rows of different prompt lengths and ages share one buffer.  Rotary positions are per row and
    baked into the cached keys, so a row's slot offset changes nothing it computes.
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype, device):
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.keys: list = []
        self.values: list = []
        self.valid = None  # (B, capacity) bool
        self.length = 0

    @property
    def rows(self) -> int:
        return 0 if self.valid is None else self.valid.shape[0]

    def _resize(self, rows_keep, shift: int, capacity: int) -> None:
        """Keep ``rows_keep`` (index tensor), move their slots right by ``shift``, grow to ``capacity``."""
        import torch

        def moved(old, fill):
            old = old.index_select(0, rows_keep)
            new = torch.full(
                (old.shape[0], *old.shape[1:-2], capacity, *old.shape[-1:])
                if old.dim() == 4
                else (old.shape[0], capacity),
                fill,
                dtype=old.dtype,
                device=old.device,
            )
            if old.dim() == 4:
                new[:, :, shift : shift + self.length] = old[:, :, : self.length]
            else:
                new[:, shift : shift + self.length] = old[:, : self.length]
            return new

        self.keys = [moved(k, 0) for k in self.keys]
        self.values = [moved(v, 0) for v in self.values]
        self.valid = moved(self.valid, False)
        self.length += shift

    def _capacity(self) -> int:
        return self.valid.shape[1]

    def add_row(self, prefill_cache, prompt_len: int) -> None:
        """Append a prefilled row (batch of one) as the last row."""
        import torch

        if self.valid is None:
            capacity = prompt_len + 64
            self.keys = [
                torch.zeros(0, self.kv_heads, capacity, self.head_dim, dtype=self.dtype, device=self.device)
                for _ in range(self.layers)
            ]
            self.values = [k.clone() for k in self.keys]
            self.valid = torch.zeros(0, capacity, dtype=torch.bool, device=self.device)
            self.length = prompt_len
        elif prompt_len > self.length:  # the newcomer's prompt is longer: shift everyone right
            keep = torch.arange(self.rows, device=self.device)
            self._resize(keep, prompt_len - self.length, prompt_len - self.length + self._capacity())
        start = self.length - prompt_len
        for layer, layer_cache in enumerate(prefill_cache.layers):
            for buffers, tensor in ((self.keys, layer_cache.keys), (self.values, layer_cache.values)):
                row = torch.zeros_like(buffers[layer][:1]) if buffers[layer].shape[0] else None
                if row is None:
                    row = torch.zeros(
                        1,
                        self.kv_heads,
                        self._capacity(),
                        self.head_dim,
                        dtype=self.dtype,
                        device=self.device,
                    )
                row[:, :, start : self.length] = tensor
                buffers[layer] = torch.cat((buffers[layer], row), dim=0)
        row_valid = torch.zeros(1, self._capacity(), dtype=torch.bool, device=self.device)
        row_valid[:, start : self.length] = True
        self.valid = torch.cat((self.valid, row_valid), dim=0)

    def keep_rows(self, rows: list[int]) -> None:
        """Drop every row not in ``rows`` and the leading slots no remaining row uses."""
        import torch

        keep = torch.tensor(rows, dtype=torch.long, device=self.device)
        if not rows:
            self.valid = None
            self.keys, self.values, self.length = [], [], 0
            return
        used = self.valid.index_select(0, keep)[:, : self.length].any(dim=0)
        first = int(torch.nonzero(used)[0, 0]) if bool(used.any()) else self.length
        if first > 0:  # compact: slide left so the buffer does not grow forever under steady load
            self.keys = [k.index_select(0, keep)[:, :, first:].contiguous() for k in self.keys]
            self.values = [v.index_select(0, keep)[:, :, first:].contiguous() for v in self.values]
            self.valid = self.valid.index_select(0, keep)[:, first:].contiguous()
            self.length -= first
        else:
            self.keys = [k.index_select(0, keep) for k in self.keys]
            self.values = [v.index_select(0, keep) for v in self.values]
            self.valid = self.valid.index_select(0, keep)

    def open_slot(self):
        """Make room for one more slot; returns the attention mask for this step (None if unneeded)."""
        if self.length + 1 > self._capacity():
            import torch

            keep = torch.arange(self.rows, device=self.device)
            self._resize(keep, 0, self._capacity() * 2)
        self.valid[:, self.length] = True
        mask = self.valid[:, : self.length + 1]
        if bool(mask.all()):
            return None
        return mask[:, None, None, :]

    def update(self, key_states, value_states, layer_idx: int, cache_kwargs: dict | None = None):
        stop = self.length + key_states.shape[2]
        self.keys[layer_idx][:, :, self.length : stop].copy_(key_states)
        self.values[layer_idx][:, :, self.length : stop].copy_(value_states)
        return self.keys[layer_idx][:, :, :stop], self.values[layer_idx][:, :, :stop]


class StreamEngine:
    """One model, one decode loop, any number of concurrent streamed takes (see the module doc)."""

    def __init__(self, synth: Synthesizer, options: StreamOptions = StreamOptions()):
        options.check()
        if synth.backend_name != "fast":
            raise UserError(
                "streaming needs the fast decode loop (sdpa attention); load the model with "
                "--attention sdpa and --backend auto"
            )
        self.synth = synth
        self.fast = synth.generator
        self.options = options
        self.model = synth.loaded.model
        self.device = self.model.model.talker.device
        self.sample_rate = 24000
        self._incoming: queue.Queue = queue.Queue()
        self._decode_tasks: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._rows: list[_Row] = []
        self._waiting: list[StreamHandle] = []
        self.steps = 0  # decode steps run (for tests and the bench)
        self.max_rows_seen = 0
        self.codec_calls = 0  # codec convolution calls, each for one or more streams' chunks
        self.max_codec_rows = 0
        self._loop = threading.Thread(target=self._run, name="stream-engine", daemon=True)
        self._decoder = threading.Thread(target=self._decode_worker, name="stream-decoder", daemon=True)
        self._loop.start()
        self._decoder.start()

    # ------------------------------------------------------------------ public
    def submit(self, job: StreamJob) -> StreamHandle:
        """Queue one take; audio chunks arrive on the returned handle as they are decoded."""
        if self._closed.is_set():
            raise RuntimeError("the stream engine is closed")
        voice = self.synth.check_voice(job.voice)
        handle = StreamHandle(
            StreamJob(job.text, voice, job.language, job.settings, job.seed), self.sample_rate
        )
        self._incoming.put(handle)
        return handle

    def close(self) -> None:
        self._closed.set()
        self._incoming.put(None)
        self._loop.join(timeout=30)
        self._decode_tasks.put(None)
        self._decoder.join(timeout=30)

    @property
    def active(self) -> int:
        return len(self._rows) + len(self._waiting) + self._incoming.qsize()

    # ------------------------------------------------------------------ the loop
    def _own_thread_settings(self) -> None:
        """Threads inherit the subnormal setting only from the thread that starts them: set it here."""
        if self.device.type == "cpu":
            from audiobox.tts.cpu import flush_denormals

            flush_denormals()

    def _run(self) -> None:
        import torch

        self._own_thread_settings()
        with torch.inference_mode():
            while not self._closed.is_set():
                self._admit(block=not self._rows)
                if self._rows:
                    try:
                        self._step()
                    except Exception as exc:  # a failed step ends every row in it, not the server
                        for row in self._rows:
                            row.handle._finish("error", exc)
                        self._rows = []
                        self.cache = None

    def _admit(self, block: bool) -> None:
        """Move queued requests into the batch (prefill each), up to ``max_batch`` rows."""
        try:
            while True:
                item = (
                    self._incoming.get(timeout=0.5)
                    if block and not self._waiting
                    else self._incoming.get_nowait()
                )
                if item is None:
                    return
                self._waiting.append(item)
                block = False
        except queue.Empty:
            pass
        while self._waiting and len(self._rows) < self.options.max_batch:
            handle = self._waiting.pop(0)
            if handle.cancelled.is_set():
                handle._finish("cancelled")
                continue
            try:
                row = self._prepare(handle)
            except Exception as exc:
                handle._finish("error", exc)
                continue
            if row.ended:  # EOS straight after the prompt (or cancelled meanwhile)
                handle._finish(row.ended)
                continue
            if not self._rows:
                self.cache = _BatchKV(
                    len(self.fast.talker.model.layers),
                    self.fast.talker.config.num_key_value_heads,
                    self._head_dim(),
                    row.past_hidden.dtype,
                    self.device,
                )
            self.cache.add_row(row.prefill_cache, row.prompt_len)
            row.prefill_cache = None
            self._rows.append(row)
            self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _head_dim(self) -> int:
        cfg = self.fast.talker.config
        return getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)

    def _prepare(self, handle: StreamHandle) -> _Row:
        job = handle.job
        method, args, kwargs = self.synth.upstream_call([job.text], [job.voice], job.language, job.settings)
        with quiet_stdout():
            captured = self.fast.capture_talker_inputs(method, *args, **kwargs)
        return _Row(handle, captured, self)

    def _step(self) -> None:
        import torch

        fast, rows, cache = self.fast, self._rows, self.cache
        tokens = torch.cat([row.token for row in rows])
        past_hidden = torch.cat([row.past_hidden for row in rows])
        first_hidden = fast.talker.get_input_embeddings()(tokens[:, None])

        def pick(logits):
            return pick_per_row([r.predictor_rules for r in rows], logits, [r.generator for r in rows])

        predicted = fast.predict_codes(past_hidden, first_hidden, pick)
        codec_ids = torch.cat((tokens[:, None], predicted), dim=-1)
        step_embeds = fast.step_embeddings(first_hidden, predicted)
        step_embeds = step_embeds + torch.cat([row.trailing_embed() for row in rows])
        mask = cache.open_slot()
        positions = torch.tensor([row.prompt_len + row.frame for row in rows], device=self.device)
        cos, sin = fast.talker_cos_sin(int(positions.max()) + 1, step_embeds.dtype, self.device)
        hidden = fast.talker_step(step_embeds, cache, mask, cos, sin, positions)
        logits = fast.talker.codec_head(hidden)[:, -1, :]
        self.steps += 1
        keep, tasks = [], []
        for i, row in enumerate(rows):
            row.past_hidden = hidden[i : i + 1, -1:, :]
            row.decoder.add(codec_ids[i].cpu())
            row.frame += 1
            row.handle.stats.frames = row.frame
            row.token = row.pick(logits[i : i + 1])
            ended = row.ended
            chunk = None if row.handle.cancelled.is_set() else row.decoder.task(ended is not None, self.steps)
            if chunk is not None:
                tasks.append((row.handle, chunk, None))
            if ended is None:
                keep.append(i)
            else:
                tasks.append((row.handle, None, ended))
        if tasks:  # one item per step: chunks due together are decoded together
            self._decode_tasks.put(tasks)
        if len(keep) != len(rows):
            self._rows = [rows[i] for i in keep]
            cache.keep_rows(keep)

    # ------------------------------------------------------------------ the decoder thread
    def _decode_worker(self) -> None:
        import torch

        decoder = self.model.model.speech_tokenizer.model.decoder
        renderer = ChunkRenderer(decoder)
        streams: dict[int, CodecStream] = {}
        self._own_thread_settings()
        with torch.inference_mode():
            while True:
                tasks = self._decode_tasks.get()
                if tasks is None:
                    return
                self._decode_step(decoder, renderer, streams, tasks)

    def _decode_step(self, decoder, renderer: ChunkRenderer, streams: dict, tasks: list) -> None:
        """Decode the chunks one step made due, same-length chunks in one call, then end the rows
        that finished (their end markers follow their last chunk)."""
        import torch

        groups: dict[tuple, list] = {}
        for handle, chunk, _ in tasks:
            if chunk is None or handle.cancelled.is_set():
                continue
            try:
                stream = streams.get(id(handle))
                if stream is None:
                    stream = streams[id(handle)] = CodecStream(decoder, renderer, self._prefix(handle.job))
                hidden = stream.advance(chunk)
            except Exception as exc:
                self._fail_decode(streams, handle, exc)
                continue
            groups.setdefault(hidden.shape[-1], []).append((handle, stream, hidden))
        for members in groups.values():
            try:
                hidden = torch.cat([hidden for _, _, hidden in members])
                wavs = renderer.render([stream for _, stream, _ in members], hidden).float().cpu().numpy()
            except Exception as exc:
                for handle, _, _ in members:
                    self._fail_decode(streams, handle, exc)
                continue
            self.codec_calls += 1
            self.max_codec_rows = max(self.max_codec_rows, len(members))
            for (handle, _, _), wav in zip(members, wavs):
                handle._put_audio(wav)
        for handle, chunk, ended in tasks:
            if chunk is None:
                streams.pop(id(handle), None)
                handle._finish(ended)

    @staticmethod
    def _fail_decode(streams: dict, handle: StreamHandle, exc: Exception) -> None:
        streams.pop(id(handle), None)
        handle.cancel()
        handle._finish("error", exc)

    @staticmethod
    def _prefix(job: StreamJob):
        import torch

        if job.voice.kind == "clone" and job.voice.prompt.ref_code is not None:
            return torch.from_numpy(job.voice.prompt.ref_code)
        return None
