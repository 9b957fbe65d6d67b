"""The fast decode loop must compute exactly what upstream qwen-tts computes.

Greedy decoding in the same precision gives identical codes and waveforms for all three model
types (single and batch of two, padded prompts included); sampling with the same seed draws the
same tokens because the logits processing and the order of random draws are the same.

Not covered here: real-checkpoint numerics beyond the tiny shapes, GPU/CUDA, bf16 on other CPUs
than the one running the tests (the bf16 case runs wherever torch supports bf16 matmuls on CPU).
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

MAX_NEW_TOKENS = 8
GREEDY = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=MAX_NEW_TOKENS)
SAMPLING = dict(
    do_sample=True,
    top_k=20,
    top_p=0.8,
    temperature=0.8,
    repetition_penalty=1.1,
    subtalker_dosample=True,
    subtalker_top_k=10,
    subtalker_top_p=0.9,
    subtalker_temperature=0.7,
    max_new_tokens=MAX_NEW_TOKENS,
)


@pytest.fixture(scope="module")
def loaded(tiny_models):
    with contextlib.redirect_stdout(sys.stderr):  # import prints a flash-attn banner to stdout
        from qwen_tts import Qwen3TTSModel
    cache = {}

    def load(kind, dtype=None):
        key = (kind, dtype)
        if key not in cache:
            kwargs = {"dtype": dtype} if dtype is not None else {}
            cache[key] = Qwen3TTSModel.from_pretrained(str(tiny_models / kind), **kwargs)
        return cache[key]

    return load


def _both(call_upstream, call_fast, seed=0):
    torch.manual_seed(seed)
    upstream = call_upstream()
    torch.manual_seed(seed)
    fast = call_fast()
    return upstream, fast


def _assert_same(upstream, fast):
    (wavs_a, sr_a), (wavs_b, sr_b) = upstream, fast
    assert sr_a == sr_b
    assert len(wavs_a) == len(wavs_b)
    for a, b in zip(wavs_a, wavs_b):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), float(np.abs(a - b).max())


def _speech(seconds=1.6, sr=24000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), sr


def test_supports_and_contract(loaded):
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("custom_voice")
    assert FastGenerator.supports(model)
    assert not FastGenerator.supports(object())
    fast = FastGenerator(model)
    frames = []
    wavs, sr = fast.generate_custom_voice(
        "Hello there.", speaker="vivian", language="english", progress=frames.append, **GREEDY
    )
    assert sr == 24000 and len(wavs) == 1 and wavs[0].dtype == np.float32
    assert [e.done for e in frames] == list(range(1, len(frames) + 1)) and len(frames) * 1920 == len(wavs[0])
    assert {(e.stage, e.unit, e.total) for e in frames} == {
        ("synthesize", "frames", GREEDY["max_new_tokens"])
    }
    assert "generate" not in model.model.talker.__dict__  # the seam is restored after the call


@pytest.mark.parametrize("batch", [1, 2])
def test_greedy_identity_custom_voice(loaded, batch):
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("custom_voice")
    fast = FastGenerator(model)
    texts = ["Hello there, this is a test.", "Short one."][:batch]
    speakers = ["vivian", "dylan"][:batch]
    args = dict(speaker=speakers if batch > 1 else speakers[0], language="auto", **GREEDY)
    text = texts if batch > 1 else texts[0]
    _assert_same(
        *_both(
            lambda: model.generate_custom_voice(text, **args),
            lambda: fast.generate_custom_voice(text, **args),
        )
    )


@pytest.mark.parametrize("batch", [1, 2])
def test_greedy_identity_voice_design(loaded, batch):
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("voice_design")
    fast = FastGenerator(model)
    texts = ["A calm voice reads this.", "Quick!"][:batch]
    instructs = ["warm, slow narrator", "excited child"][:batch]
    text = texts if batch > 1 else texts[0]
    instruct = instructs if batch > 1 else instructs[0]
    _assert_same(
        *_both(
            lambda: model.generate_voice_design(text, instruct=instruct, language="english", **GREEDY),
            lambda: fast.generate_voice_design(text, instruct=instruct, language="english", **GREEDY),
        )
    )


@pytest.mark.parametrize("icl", [False, True])
def test_greedy_identity_voice_clone(loaded, icl):
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("base")
    fast = FastGenerator(model)
    ref = _speech()
    prompt = model.create_voice_clone_prompt(
        ref, ref_text="a reference sentence" if icl else None, x_vector_only_mode=not icl
    )
    texts = ["The first sentence to clone.", "And a second."]
    _assert_same(
        *_both(
            lambda: model.generate_voice_clone(
                texts, language="english", voice_clone_prompt=prompt, **GREEDY
            ),
            lambda: fast.generate_voice_clone(texts, language="english", voice_clone_prompt=prompt, **GREEDY),
        )
    )
    _assert_same(
        *_both(
            lambda: model.generate_voice_clone(texts[0], voice_clone_prompt=prompt, **GREEDY),
            lambda: fast.generate_voice_clone(texts[0], voice_clone_prompt=prompt, **GREEDY),
        )
    )


def test_early_stop_in_batch_is_identical(loaded):
    """One row hits the stop token early: padding of finished rows and stopping follow upstream."""
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("custom_voice")
    fast = FastGenerator(model)
    texts = ["Hello there, this is a test.", "Short one."]
    args = dict(speaker="vivian", language="english", **GREEDY)
    # Use a token upstream picks for row 0 at frame 3 as the stop token: row 0 then ends early.
    codes = []
    original = model.model.speech_tokenizer.decode

    def spy(items, *a, **k):
        codes.extend(item["audio_codes"] for item in items)
        return original(items, *a, **k)

    model.model.speech_tokenizer.decode = spy
    try:
        model.generate_custom_voice(texts, **args)
    finally:
        del model.model.speech_tokenizer.decode
    stop = int(codes[0][3, 0])
    _assert_same(
        *_both(
            lambda: model.generate_custom_voice(texts, eos_token_id=stop, **args),
            lambda: fast.generate_custom_voice(texts, eos_token_id=stop, **args),
        )
    )


def test_sampling_identity_with_seed(loaded):
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("custom_voice")
    fast = FastGenerator(model)
    texts = ["Sampling should follow the same draws.", "Two rows."]
    for seed in (1, 2):
        upstream, ours = _both(
            lambda: model.generate_custom_voice(texts, speaker="vivian", **SAMPLING),
            lambda: fast.generate_custom_voice(texts, speaker="vivian", **SAMPLING),
            seed=seed,
        )
        _assert_same(upstream, ours)
    # and sampling really samples: two seeds give different audio
    torch.manual_seed(1)
    a = fast.generate_custom_voice(texts[0], speaker="vivian", **SAMPLING)[0][0]
    torch.manual_seed(2)
    b = fast.generate_custom_voice(texts[0], speaker="vivian", **SAMPLING)[0][0]
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_greedy_identity_bf16(loaded):
    from audiobox.tts.fastpath import FastGenerator

    model = loaded("custom_voice", torch.bfloat16)
    fast = FastGenerator(model)
    texts = ["Half precision weights.", "Second row here."]
    _assert_same(
        *_both(
            lambda: model.generate_custom_voice(texts, speaker="vivian", **GREEDY),
            lambda: fast.generate_custom_voice(texts, speaker="vivian", **GREEDY),
        )
    )


def test_packed_bf16_weights_keep_upstream_output(tiny_models, loaded):
    """oneDNN-packed bf16 weights (the CPU default) change speed, never the result."""
    with contextlib.redirect_stdout(sys.stderr):
        from qwen_tts import Qwen3TTSModel
    from audiobox.tts.fastpath import FastGenerator
    from audiobox.tts.weights import pack_bf16

    reference = loaded("custom_voice", torch.bfloat16)
    packed = Qwen3TTSModel.from_pretrained(str(tiny_models / "custom_voice"), dtype=torch.bfloat16)
    count = pack_bf16(packed)
    if count == 0:
        pytest.skip("oneDNN packing is not bit-identical on this CPU, so pack_bf16 leaves the model as is")
    linears = [m for m in packed.model.talker.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears and count > 10
    fast = FastGenerator(packed)
    texts = ["Packed weights.", "A second, longer row of text."]
    _assert_same(
        *_both(
            lambda: reference.generate_custom_voice(texts, speaker="vivian", **GREEDY),
            lambda: fast.generate_custom_voice(texts, speaker="vivian", **GREEDY),
        )
    )
    _assert_same(
        *_both(
            lambda: reference.generate_custom_voice(texts[0], speaker="vivian", **SAMPLING),
            lambda: fast.generate_custom_voice(texts[0], speaker="vivian", **SAMPLING),
            seed=3,
        )
    )


def test_pack_bf16_leaves_float32_alone(loaded):
    from audiobox.tts.weights import pack_bf16

    model = loaded("custom_voice")
    assert pack_bf16(model) == 0
    assert any(isinstance(m, torch.nn.Linear) for m in model.model.talker.modules())


def test_int8_layers_match_torch_ao_dynamic_quantization():
    """quantize_int8 builds its layers itself (for load speed); they must compute exactly what
    torch.ao's quantize_dynamic makes of the same weights, with or without bias, from bf16 or float32."""
    import copy
    import warnings

    from audiobox.tts.weights import _dynamic_int8_linear_class

    int8_linear = _dynamic_int8_linear_class()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48)
    for bias, dtype in ((False, torch.bfloat16), (True, torch.float32)):
        linear = torch.nn.Linear(48, 40, bias=bias).to(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(copy.deepcopy(linear).float()), {torch.nn.Linear}, dtype=torch.qint8
            )
        ours = int8_linear(linear)(x)
        assert torch.equal(ours, reference(x))
        assert not torch.equal(ours, linear.float()(x))  # really quantized


def test_int8_identity(tiny_models):
    """Opt-in dynamic int8: the fast loop runs the same quantized modules, so results still match."""
    with contextlib.redirect_stdout(sys.stderr):
        from qwen_tts import Qwen3TTSModel
    from audiobox.tts.fastpath import FastGenerator
    from audiobox.tts.weights import quantize_int8

    model = Qwen3TTSModel.from_pretrained(str(tiny_models / "custom_voice"))
    quantize_int8(model)
    fast = FastGenerator(model)
    _assert_same(
        *_both(
            lambda: model.generate_custom_voice("Eight bit weights.", speaker="vivian", **GREEDY),
            lambda: fast.generate_custom_voice("Eight bit weights.", speaker="vivian", **GREEDY),
        )
    )


def test_resolve_cpu_dtype_rule():
    from audiobox.tts.cpu import has_native_bf16, recommended_threads, resolve_cpu_dtype

    assert resolve_cpu_dtype("auto", flags={"avx2", "avx512_bf16"}) == "bfloat16"
    assert resolve_cpu_dtype("auto", flags={"amx_bf16"}) == "bfloat16"
    assert resolve_cpu_dtype("auto", flags={"avx2", "avx512f"}) == "float32"
    assert resolve_cpu_dtype("bf16", flags=set()) == "bfloat16"
    assert resolve_cpu_dtype("float32", flags={"avx512_bf16"}) == "float32"
    assert isinstance(has_native_bf16(), bool)  # reads /proc/cpuinfo; False where unreadable
    assert recommended_threads("float32", cpu_count=2) == 1
    assert recommended_threads("bfloat16", cpu_count=2) == 2
    assert recommended_threads("float32", cpu_count=16) == 16


def test_loading_on_cpu_flushes_subnormals_and_keeps_freed_memory(tiny_models):
    """Subnormal floats ran the codec up to 30x slower (docs/benchmarks.md §6b): a model loaded on
    the CPU computes them as zero, in the loading thread and in threads it starts afterwards.  Run
    in a fresh interpreter: the setting belongs to the threads of the process that loads."""
    import subprocess
    import sys

    script = f"""
import threading, torch
from audiobox.tts.cpu import keep_freed_memory
from audiobox.tts.runtime import RuntimeOptions, load_tts
tiny = lambda: float(torch.tensor([1e-30]) * torch.tensor([1e-10]))
assert tiny() > 0, 'subnormals are kept before a model loads'
load_tts({str(tiny_models / "custom_voice")!r}, RuntimeOptions(device="cpu", dtype="float32", threads=1), "custom_voice")
seen = []
worker = threading.Thread(target=lambda: seen.append(tiny()))
worker.start(); worker.join()
print(tiny(), seen[0], keep_freed_memory())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    main_thread, later_thread, kept = done.stdout.split()[-3:]
    assert float(main_thread) == 0.0 and float(later_thread) == 0.0
    assert kept == "True"  # glibc here (Debian), as in the Docker images


def test_static_cache_grows_and_keeps_contents():
    from audiobox.tts.fastpath import _StaticKV

    cache = _StaticKV(
        layers=2, batch=1, kv_heads=1, capacity=2, head_dim=3, dtype=torch.float32, device="cpu"
    )
    written = []
    for step in range(5):
        key = torch.full((1, 1, 1, 3), float(step))
        for layer in range(2):
            keys, values = cache.update(key, -key, layer)
        cache.length += 1
        written.append(step)
        assert keys.shape[2] == step + 1
        assert keys[0, 0, :, 0].tolist() == [float(s) for s in written]
        assert torch.equal(values, -keys)
