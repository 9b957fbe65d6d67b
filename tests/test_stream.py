"""Streaming speech (audiobox.tts.stream) against whole takes, on the tiny real checkpoints.

The joined stream must match the whole take of the same request (greedy, same seed) within 1e-3
and show no seam: no jump at a chunk border larger than the take's own largest sample step.
Concurrent requests share the decode loop (rows joining a running batch), and a cancelled stream
stops generating.  Not covered: audio quality (random weights), real-size codec numerics.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from audiobox.tts.settings import GenerationSettings  # noqa: E402

GREEDY = GenerationSettings(greedy=True, max_new_tokens=40)
TEXT = "Streaming speech arrives while the model is still speaking."


@pytest.fixture(scope="module")
def synths(tiny_models):
    from audiobox.tts.runtime import RuntimeOptions, load_tts
    from audiobox.tts.synth import Synthesizer

    options = RuntimeOptions(device="cpu", dtype="float32", threads=1)
    return {
        kind: Synthesizer(load_tts(str(tiny_models / kind), options, kind))
        for kind in ("custom_voice", "base")
    }


@pytest.fixture(scope="module")
def engine(synths):
    from audiobox.tts.stream import StreamEngine, StreamOptions

    engine = StreamEngine(synths["custom_voice"], StreamOptions(first_chunk_frames=3, chunk_frames=5))
    yield engine
    engine.close()


def _streamed(engine, job):
    handle = engine.submit(job)
    chunks = list(handle)
    return chunks, handle


def _assert_matches(chunks, whole):
    joined = np.concatenate(chunks)
    assert len(joined) == len(whole)
    assert float(np.abs(joined - whole).max()) <= 1e-3
    own_step = float(np.abs(np.diff(whole)).max())
    border = 0
    for chunk in chunks[:-1]:
        border += len(chunk)
        assert abs(float(joined[border] - joined[border - 1])) <= own_step


def test_stream_matches_the_whole_take(synths, engine):
    from audiobox.tts.stream import StreamJob
    from audiobox.tts.synth import VoiceSpec

    synth = synths["custom_voice"]
    voice = VoiceSpec.builtin("vivian")
    whole = synth.speak(TEXT, voice, "english", GREEDY, seed=7)[0].samples
    chunks, handle = _streamed(engine, StreamJob(TEXT, voice, "english", GREEDY, 7))
    assert len(chunks) >= 3  # 3 + 5 + ... frames: really streamed, not one block
    assert len(chunks[0]) == 3 * 1920
    _assert_matches(chunks, whole)
    assert handle.stats.finish in ("eos", "budget")
    assert (
        handle.stats.first_audio_sec is not None and handle.stats.first_audio_sec <= handle.stats.elapsed_sec
    )


def test_sampled_stream_draws_like_the_whole_take(synths, engine):
    """Each stream samples from its own generator seeded like the whole take's global seed."""
    from audiobox.tts.settings import resolve_settings
    from audiobox.tts.stream import StreamJob
    from audiobox.tts.synth import VoiceSpec

    settings, _ = resolve_settings("expressive", max_new_tokens=30)
    voice = VoiceSpec.builtin("ryan")
    whole = synths["custom_voice"].speak(TEXT, voice, "english", settings, seed=11)[0].samples
    chunks, _ = _streamed(engine, StreamJob(TEXT, voice, "english", settings, 11))
    _assert_matches(chunks, whole)


def test_icl_clone_stream_decodes_after_the_reference(synths):
    """An ICL clone's reference codes are the codec's history, never emitted (as upstream cuts them)."""
    from audiobox.audio import Audio
    from audiobox.tts.stream import StreamEngine, StreamJob
    from audiobox.tts.synth import VoiceSpec

    synth = synths["base"]
    t = np.arange(int(1.6 * 24000)) / 24000
    ref = Audio((0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24000)
    voice = VoiceSpec.clone(synth.build_clone_prompt(ref, "a short reference line"))
    whole = synth.speak(TEXT, voice, "english", GREEDY, seed=3)[0].samples
    engine = StreamEngine(synth)
    try:
        joined = engine.submit(StreamJob(TEXT, voice, "english", GREEDY, 3)).read_all()
    finally:
        engine.close()
    # upstream cuts the reference proportionally (int rounding may keep one more sample)
    assert 0 <= len(whole) - len(joined) <= 1
    assert float(np.abs(joined - whole[len(whole) - len(joined) :]).max()) <= 1e-3


def test_concurrent_streams_share_the_loop_and_match_solo_takes(synths, engine):
    from audiobox.tts.stream import StreamJob
    from audiobox.tts.synth import VoiceSpec

    synth = synths["custom_voice"]
    jobs = [
        StreamJob(f"{TEXT} Number {i}.", VoiceSpec.builtin(name), "english", GREEDY, 20 + i)
        for i, name in enumerate(("vivian", "ryan", "serena"))
    ]
    wholes = [synth.speak(j.text, j.voice, j.language, j.settings, seed=j.seed)[0].samples for j in jobs]
    steps_before = engine.steps
    handles = [engine.submit(j) for j in jobs]
    results: dict[int, list] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, list(handles[i]))) for i in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert engine.max_rows_seen >= 2
    longest = max(h.stats.frames for h in handles)
    assert engine.steps - steps_before < sum(h.stats.frames for h in handles)  # steps were shared
    assert engine.steps - steps_before >= longest
    for i, whole in enumerate(wholes):
        _assert_matches(results[i], whole)
    assert engine.max_codec_rows >= 2  # chunks due at the same step went through one codec call


def test_rows_that_join_later_share_codec_calls_once_their_chunks_align(synths):
    """Later chunks end on the same engine steps for every row, so a stream that joined while
    another was mid-take decodes together with it and both still equal their whole takes."""
    from audiobox.tts.stream import StreamEngine, StreamJob, StreamOptions
    from audiobox.tts.synth import VoiceSpec

    synth = synths["custom_voice"]
    settings = GenerationSettings(greedy=True, max_new_tokens=60)
    jobs = [
        StreamJob(TEXT * 2, VoiceSpec.builtin(name), "english", settings, 30) for name in ("ryan", "vivian")
    ]
    wholes = [synth.speak(j.text, j.voice, j.language, j.settings, seed=j.seed)[0].samples for j in jobs]
    engine = StreamEngine(synth, StreamOptions(first_chunk_frames=2, chunk_frames=4))
    try:
        first = engine.submit(jobs[0])
        chunks = [next(iter(first))]  # the first stream is audible before the second arrives
        second = engine.submit(jobs[1])
        later = list(second)
        chunks += list(first)
    finally:
        engine.close()
    assert first.stats.frames >= 20 and second.stats.frames >= 20
    assert engine.max_codec_rows == 2
    _assert_matches(chunks, wholes[0])
    _assert_matches(later, wholes[1])


def test_engine_threads_flush_subnormals_whoever_starts_them(synths):
    """The loop and decoder threads set the CPU's subnormal flush themselves: an engine built from
    a thread without it (a server's request thread) still decodes at full speed."""
    import torch
    from audiobox.tts.stream import StreamEngine

    seen = []

    class Probe(StreamEngine):
        def _own_thread_settings(self):
            super()._own_thread_settings()
            seen.append(float(torch.tensor([1e-30]) * torch.tensor([1e-10])))

    def build():
        torch.set_flush_denormal(False)  # this thread only
        Probe(synths["custom_voice"]).close()

    builder = threading.Thread(target=build)
    builder.start()
    builder.join()
    assert seen == [0.0, 0.0]


def test_chunk_renderer_continues_the_convolutions_exactly(synths):
    """Chunks of 1, 3, 5 and 2 frames rendered one after another (two streams batched, one fresh
    and one already running) equal upstream's convolutions over the whole sequence."""
    import torch
    from audiobox.tts.stream import ChunkRenderer

    decoder = synths["custom_voice"].loaded.model.model.speech_tokenizer.model.decoder
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, decoder.config.latent_dim, 11, generator=generator)
    with torch.inference_mode():
        whole = hidden
        for block in [*(b for blocks in decoder.upsample for b in blocks), *decoder.decoder]:
            whole = block(whole)
        whole = whole.clamp(min=-1, max=1)[:, 0]

        class Stream:
            conv_state = None

        renderer, streams, parts, start = ChunkRenderer(decoder), [Stream(), Stream()], [], 0
        for count in (1, 3, 5, 2):
            parts.append(renderer.render(streams, hidden[..., start : start + count]))
            start += count
        joined = torch.cat(parts, dim=-1)
    assert joined.shape == whole.shape == (2, 11 * 1920)
    assert float((joined - whole).abs().max()) < 1e-5
    # what a stream keeps between chunks is its tails, not the chunk activations they were cut from
    kept = sum(tail.untyped_storage().nbytes() for tail in streams[0].conv_state)
    assert kept <= 2 * sum(tail.numel() * tail.element_size() for tail in streams[0].conv_state)


def test_cancel_stops_generation(synths, engine):
    from audiobox.tts.settings import resolve_settings
    from audiobox.tts.stream import StreamJob
    from audiobox.tts.synth import VoiceSpec

    settings, _ = resolve_settings("stable", max_new_tokens=400)
    handle = engine.submit(StreamJob(TEXT * 4, VoiceSpec.builtin("vivian"), "english", settings, 5))
    first = next(iter(handle))
    handle.cancel()
    rest = list(handle)
    assert len(first) > 0
    assert handle.stats.finish in ("cancelled", "eos")
    if handle.stats.finish == "cancelled":
        assert handle.stats.frames < 399
    assert sum(len(c) for c in rest) < 399 * 1920


def test_speak_stream_writes_the_take_progressively_with_first_audio_time(tiny_models, tmp_path, capsys):
    import json

    import soundfile as sf
    from audiobox.cli.voice_synth import main

    common = ["--speaker", "Ryan", "--text", TEXT, "--model", str(tiny_models / "custom_voice")]
    common += ["--greedy", "--seed", "4", "--max-new-tokens", "20", "--cache", str(tmp_path / "c")]
    assert main(["speak", *common, "--out-exact", str(tmp_path / "whole"), "--json"]) == 0
    capsys.readouterr()
    assert main(["speak", *common, "--out-exact", str(tmp_path / "live"), "--stream", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["timings"]["first_audio_sec"] <= result["timings"]["synth_sec"]
    meta = json.loads((tmp_path / "live" / "takes.meta.json").read_text())
    assert meta["app"] == "voice-synth speak --stream" and meta["takes"][0]["file"] == "take_01.wav"
    whole, rate = sf.read(tmp_path / "whole" / "take_01.wav", dtype="float32")
    live, live_rate = sf.read(tmp_path / "live" / "take_01.wav", dtype="float32")
    assert rate == live_rate == 24000 and len(whole) == len(live)
    assert float(np.abs(whole - live).max()) <= 2 / 32767  # both 16-bit files of the same audio


def test_speak_stdout_pipes_wav_or_pcm(tiny_models, tmp_path, capsysbinary):
    import io
    import json

    import soundfile as sf
    from audiobox.cli.voice_synth import main

    common = ["speak", "--speaker", "Ryan", "--text", TEXT, "--model", str(tiny_models / "custom_voice")]
    common += ["--greedy", "--seed", "4", "--max-new-tokens", "12", "--cache", str(tmp_path / "c")]
    assert main([*common, "--stdout", "--json"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out[:4] == b"RIFF" and captured.out[36:40] == b"data"
    pcm = np.frombuffer(captured.out[44:], dtype="<i2")
    summary = json.loads(captured.err[captured.err.index(b"{") :])  # --json went to stderr
    assert summary["timings"]["first_audio_sec"] > 0
    assert main([*common, "--stdout", "pcm"]) == 0
    raw = np.frombuffer(capsysbinary.readouterr().out, dtype="<i2")
    assert len(raw) == len(pcm) > 0 and len(raw) % 1920 == 0 and np.array_equal(raw, pcm)
    assert not (tmp_path / "c" / "work").exists() or not any((tmp_path / "c" / "work").rglob("*.wav"))
    header_ok, _ = sf.read(io.BytesIO(captured.out[:44] + pcm.tobytes()), dtype="int16")[0], None
    assert len(header_ok) == len(pcm)


def test_stream_refuses_variants_and_take_checks(tiny_models, tmp_path, capsys):
    from audiobox.cli.voice_synth import main

    common = ["speak", "--speaker", "Ryan", "--text", "Hi.", "--model", str(tiny_models / "custom_voice")]
    common += ["--cache", str(tmp_path / "c"), "--stream"]
    assert main([*common, "--variants", "2"]) == 2
    assert "drop --variants" in capsys.readouterr().err
    assert main([*common, "--format", "mp3"]) == 2
    assert "--stream writes" in capsys.readouterr().err


def test_serve_bench_runs_on_the_tiny_checkpoint(tiny_models, tmp_path):
    """bench/serve_bench.py (numbers in docs/benchmarks.md) must keep running; speed is not asserted."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "serve.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            str(root / "bench/serve_bench.py"),
            str(tiny_models / "custom_voice"),
            "--frames",
            "4",
        ]
        + ["--reps", "1", "--clients", "1,2", "--dtype", "float32", "--threads", "1", "--json-out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [summary] = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["frames_made"] == [4] and summary["first_audio_sec"] > 0
    assert set(summary["throughput"]) == {"1", "2"} and summary["throughput"]["2"]["gain"] > 0
    assert len(summary["throughput"]["2"]["gains"]) == 2  # median of alternating pairs
    assert summary["codec"]["most_rows_in_one_call"] == 2  # two clients' chunks decoded together


def test_batch_cache_rows_join_grow_and_leave_without_moving_their_keys():
    """_BatchKV: a longer newcomer shifts the others right, capacity doubles when full, finished
    rows leave and the dead leading slots are compacted away; every row keeps its own keys."""
    import torch
    from audiobox.tts.stream import _BatchKV

    class Prefill:  # the shape of a transformers DynamicCache after a batch-of-one prefill
        def __init__(self, length, value):
            keys = torch.full((1, 2, length, 4), float(value))
            self.layers = [type("L", (), {"keys": keys, "values": keys + 0.5})()]

    cache = _BatchKV(layers=1, kv_heads=2, head_dim=4, dtype=torch.float32, device="cpu")
    cache.add_row(Prefill(3, 1), 3)
    cache.add_row(Prefill(5, 2), 5)  # longer: row 0 moves right by 2
    assert cache.length == 5 and cache.valid.tolist()[0][:5] == [False, False, True, True, True]
    for step in range(80):  # past the initial capacity (3 + 64): it doubles
        mask = cache.open_slot()
        assert mask is not None and mask.shape == (2, 1, 1, cache.length + 1)
        new = torch.full((2, 2, 1, 4), 100.0 + step)
        keys, _ = cache.update(new, new, 0)
        cache.length += 1
    assert cache.keys[0].shape[2] >= 85 and keys.shape[2] == 85
    assert float(cache.keys[0][0, 0, 2, 0]) == 1.0 and float(cache.keys[0][1, 0, 0, 0]) == 2.0
    assert float(cache.keys[0][0, 0, 84, 0]) == 179.0
    cache.keep_rows([0])  # row 1 (the one whose prompt started at slot 0) leaves: 2 dead slots go
    assert cache.rows == 1 and cache.length == 83 and bool(cache.valid[0, :83].all())
    assert float(cache.keys[0][0, 0, 0, 0]) == 1.0 and cache.open_slot() is None  # no padding left
    cache.keep_rows([])
    assert cache.rows == 0
