"""voice-split's pipeline: source -> speech map -> vocals of the speech-dense windows -> ranked clips.

Stages (each with progress and a timing):
  1. source   `audiobox.sources`: download (cached by video id) or a local file; trim validated.
  2. vad      Silero (sequence ONNX) on the trimmed audio at 16 kHz: where is anyone talking.
     speakers `audiobox.speakers`: who talks when; one speaker is chosen (most speech, rank N, or
              closest to a sample) and, when there are several, only the stretches where that
              speaker talks alone feed the next stages.
  3. windows  groups of consecutive speech spans, at most `window_s` long, ranked by how much of
              them is speech; only the best (speech-dense) ones go to Demucs, never the whole file.
  4. separate Demucs vocals per window (model loaded once), then a second VAD pass on the vocals.
  5. clips    runs of speech spans with no pause longer than `max_pause_s`; a clip starts at a span
              start and ends at a span end, so it never runs into music or silence. Candidates are
              ranked with `audiobox.quality` (the measures voice-clone uses), non-overlapping.
  6. export   24 kHz mono PCM16 wav clips + the best reference clip + clips.json.

Caches live under `<cache>/split/<sha256 of the source file>[:16]/`, so two different files called
audio.wav never share results; every cache file is written atomically.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from audiobox.audio import MAX_DECODE_S, TTS_SAMPLE_RATE, load_audio, write_audio
from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_json, sha256_file, sha256_json
from audiobox.progress import ProgressEvent, ProgressFn, Reporter
from audiobox.separate import LoadedSeparator, SeparatorOptions, load_separator
from audiobox.sources import (
    SourceLimits,
    SourceMedia,
    TrimRange,
    format_timestamp,
    resolve_source,
    validate_trim,
)
from audiobox.speakers import (
    NEEDS_ENCODER,
    SpeakerChoice,
    SpeakerEncoder,
    SpeakerMap,
    SpeakerSelection,
    SpeakerSettings,
    choose_speaker,
    encoder_available,
    restrict_spans,
    speaker_lines,
    within_one,
)
from audiobox.stagecache import cached_file, cached_json, read_json
from audiobox.vad import VAD_SAMPLE_RATE, Span, VadSettings, load_vad, merge_spans, speech_seconds

log = logging.getLogger(__name__)

SPLIT_CACHE_VERSION = 1
# the first pass only needs to know roughly where speech is; a longer min_silence keeps sentences whole
RAW_VAD = VadSettings(threshold=0.5, min_speech_s=0.3, min_silence_s=0.3, pad_s=0.05)
# the second pass sets the clip edges: a little padding so word onsets/offsets are not clipped
VOCAL_VAD = VadSettings(threshold=0.5, min_speech_s=0.25, min_silence_s=0.15, pad_s=0.15, pad_end_s=0.06)
FADE_S = 0.01


@dataclass
class SplitOptions:
    """Everything that decides what voice-split produces (the CLI maps flags 1:1 onto this)."""

    url: str | None = None
    audio: Path | None = None
    start: float | None = None  # seconds (parse with sources.parse_timestamp)
    end: float | None = None
    cookies: Path | None = None
    limits: SourceLimits = SourceLimits()  # download size/duration caps (--max-download-mb, --max-duration)
    clips: int = 5
    length: float = 12.0  # target clip length, seconds
    min_clip_s: float | None = None  # default: 0.5 x length (at least 2 s)
    max_clip_s: float | None = None  # default: 1.5 x length
    max_pause_s: float = 0.8  # longest pause allowed inside one clip
    window_s: float | None = None  # Demucs window; default max(3 x length, 30)
    windows: int | None = None  # how many windows to separate; default from clips x length
    min_density: float = 0.4  # a window goes to Demucs only if at least this share is speech
    separate: bool = True
    separator: SeparatorOptions = field(default_factory=SeparatorOptions)
    max_scan_s: float | None = None  # only scan the first N seconds of the (trimmed) source
    out_dir: Path | None = None  # where clips are written (created)
    refresh: bool = False  # ignore caches (they are rewritten)
    speaker: SpeakerChoice = field(default_factory=SpeakerChoice)  # whose clips: auto, rank N, --match
    speaker_settings: SpeakerSettings = field(default_factory=SpeakerSettings)
    find_speakers: bool = True  # False: skip the speaker stage (a library caller who knows it is one voice)

    def clip_bounds(self) -> tuple[float, float]:
        lo = self.min_clip_s if self.min_clip_s is not None else max(2.0, 0.5 * self.length)
        hi = self.max_clip_s if self.max_clip_s is not None else 1.5 * self.length
        return lo, max(lo, hi)

    def window_len(self) -> float:
        return float(self.window_s) if self.window_s else max(3.0 * self.length, 30.0)

    def validate(self) -> None:
        if self.clips < 0:
            raise UserError("--clips must be 0 or more")
        if not (0.5 <= self.length <= 120):
            raise UserError("--length must be between 0.5 and 120 seconds")
        if self.window_s is not None and self.window_s < self.length:
            raise UserError("--window-len must be at least --length")
        if self.windows is not None and self.windows < 1:
            raise UserError("--windows must be at least 1")
        if self.max_scan_s is not None and self.max_scan_s <= 0:
            raise UserError("--max-scan-seconds must be positive")
        validate_trim(self.start, self.end, float("inf"))  # the order of --start/--end, before any download
        self.speaker_settings.validate()
        if self.speaker.match is not None and not Path(self.speaker.match).is_file():
            raise UserError(f"--match: no such file: {self.speaker.match}")


@dataclass
class Window:
    start: float  # seconds in the trimmed signal
    end: float
    speech_s: float

    @property
    def density(self) -> float:
        return self.speech_s / max(1e-9, self.end - self.start)


@dataclass
class Clip:
    """One exported clip. Times are seconds in the ORIGINAL source file (trim offset added)."""

    index: int
    path: Path | None
    start: float
    end: float
    score: float
    measures: dict[str, Any]
    from_vocals: bool
    window: int
    speaker: int | None = None  # the chosen speaker's id (None when the speaker stage was skipped)
    speaker_similarity: float | None = None  # its speech's cosine to that speaker's centroid (speaker map)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "file": self.path.name if self.path else None,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration": round(self.duration, 3),
            "score": round(self.score, 4),
            "from_vocals": self.from_vocals,
            "window": self.window,
            "speaker": self.speaker,
            "speaker_similarity": self.speaker_similarity,
            "measures": self.measures,
        }


@dataclass
class SplitResult:
    source: SourceMedia
    trim: TrimRange
    clips: list[Clip]
    reference: Clip | None
    out_dir: Path | None
    cache_dir: Path
    raw_spans: list[Span]
    windows: list[Window]
    timings: dict[str, float]
    stats: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    reference_samples: np.ndarray | None = field(default=None, repr=False)
    reference_chosen_by: str = "auto"  # "user" after use_clip_as_reference
    speakers: SpeakerSelection | None = None  # who was found and who was kept

    def speaker_note(self) -> dict | None:
        """Whose voice the split kept, for voice.json and the summary line."""
        if self.speakers is None:
            return None
        chosen, found = self.speakers.chosen, len(self.speakers.map.speakers)
        return {
            "id": chosen.speaker.id,
            "of": found,
            "reason": chosen.reason,
            "text": f"speaker {chosen.speaker.id} of {found} ({chosen.reason})",
        }

    def source_record(self, **details) -> dict:
        """voice.json "source" of a voice registered from this split (voice-split, voice-register)."""
        return dict(
            self.source.meta,
            trim=[self.trim.start, self.trim.end],
            n_clips=len(self.clips),
            speaker=self.speaker_note(),
            **details,
        )


@dataclass
class SpeakerListing:
    """voice-split --list-speakers: the speakers found, a sample clip of each, and the choice."""

    source: SourceMedia
    trim: TrimRange
    selection: SpeakerSelection
    samples: dict[int, tuple[Path, Span]]  # speaker id -> a short wav to listen to, its times in the source
    audio_s: float
    speech_s: float
    timings: dict[str, float]

    def to_json(self) -> dict:
        data = self.selection.to_json()
        for entry in data["found"]:
            path, span = self.samples.get(entry["id"], (None, None))
            entry["sample"] = str(path) if path else None
            entry["sample_span"] = span.to_list() if span else None
        return {
            "source": self.source.meta,
            "source_file": str(self.source.path),
            "trim": [self.trim.start, self.trim.end],
            "audio_s": round(self.audio_s, 3),
            "speech_s": round(self.speech_s, 3),
            "speakers": data,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


# ----------------------------------------------------------------------------- helpers


def select_windows(
    spans: list[Span], window_s: float, count: int, min_density: float, total_s: float, margin_s: float = 0.25
) -> list[Window]:
    """Greedy: the window with the most speech among the spans not yet covered, `count` times.

    A window is the longest group of consecutive uncovered spans from one span on that is at most
    `window_s` long and at least `min_density` speech (one speaker's spans are sparse: the other
    voices' turns are gaps), widened by
    `margin_s` (never into a neighbouring window), so Demucs never cuts a word.
    """
    covered = [False] * len(spans)
    chosen: list[Window] = []
    while len(chosen) < count:
        best: tuple[float, int, int] | None = None
        for i, first in enumerate(spans):
            if covered[i]:
                continue
            speech, j, fit = 0.0, i, None
            while j < len(spans) and not covered[j] and (j == i or spans[j].end - first.start <= window_s):
                speech += spans[j].duration
                j += 1
                length = min(window_s, spans[j - 1].end - first.start)
                if speech / max(1e-9, length + 2 * margin_s) >= min_density:
                    fit = (speech, j)  # the longest group from span i that is still dense enough
            if fit is None:
                continue
            speech, j = fit
            if best is None or speech > best[0] + 1e-9:
                best = (speech, i, j)
        if best is None:
            break
        speech, i, j = best
        lo = max([0.0] + [w.end for w in chosen if w.end <= spans[i].start + 1e-9])
        hi = min([total_s] + [w.start for w in chosen if w.start >= spans[j - 1].end - 1e-9])
        start = max(lo, spans[i].start - margin_s)
        end = min(hi, spans[j - 1].end + margin_s, start + window_s + 2 * margin_s)
        chosen.append(Window(start, end, speech))
        for k in range(i, j):
            covered[k] = True
    return sorted(chosen, key=lambda w: w.start)


def candidate_clips(
    spans: list[Span], lo: float, hi: float, target: float, max_pause_s: float, allow_short: bool = False
) -> list[Span]:
    """Every [span i start, span j end] with no inner pause > max_pause_s and lo <= length <= hi.

    With allow_short (used only when nothing anywhere reached lo), each run of speech of at least
    1.5 s is a candidate, so short recordings still give something.
    """
    out: list[Span] = []
    n = len(spans)
    for i in range(n):
        for j in range(i, n):
            if j > i and spans[j].start - spans[j - 1].end > max_pause_s:
                break
            length = spans[j].end - spans[i].start
            if length > hi:
                break
            if length >= lo:
                out.append(Span(spans[i].start, spans[j].end))
    if not out and allow_short:
        for run in merge_spans(spans, max_pause_s):
            if run.duration >= 1.5:
                if run.duration <= hi:
                    out.append(run)
                else:  # a single very long span: cut it to the target (rare; no pause to cut at)
                    out.append(Span(run.start, run.start + target))
    return out


def _fade(x: np.ndarray, rate: int) -> np.ndarray:
    n = min(len(x) // 2, int(FADE_S * rate))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def measure_clip(samples: np.ndarray, rate: int, spans: list[Span]) -> tuple[float, dict[str, Any]]:
    """Score one candidate with the shared measures of `audiobox.quality` (the ones voice-clone uses)."""
    from audiobox.quality import QUALITY_VERSION, measure, quality_score

    measures = measure(samples, rate, speech_spans=spans)
    score = quality_score(measures)
    return score.score, {
        **measures.to_dict(),
        "parts": score.to_dict()["parts"],
        "quality_version": QUALITY_VERSION,
    }


def pick_clips(
    scored: list[tuple[float, Span, Any]], count: int, target: float
) -> list[tuple[float, Span, Any]]:
    """Highest score first, then closest to the target length; never two overlapping clips."""
    ordered = sorted(scored, key=lambda t: (-round(t[0], 3), abs(t[1].duration - target), t[1].start))
    chosen: list[tuple[float, Span, Any]] = []
    for item in ordered:
        if len(chosen) >= count:
            break
        span = item[1]
        if any(span.start < c[1].end and c[1].start < span.end for c in chosen):
            continue
        chosen.append(item)
    return chosen


def clip_shortfall(opts: SplitOptions, found: int, speech_s: float, windows: list[Window], where: str) -> str:
    """Why fewer clips than --clips came out, and what to change: the scarcest resource first."""
    lo, hi = opts.clip_bounds()
    searched = sum(w.speech_s for w in windows)
    if speech_s < opts.clips * lo:
        scan = ", a larger --max-scan-seconds" if opts.max_scan_s else ""
        why = (
            f"there are {speech_s:.0f} s of speech{where}, not enough for {opts.clips} clips of at least "
            f"{lo:.1f} s (try a shorter --length{scan} or a wider --start/--end)"
        )
    elif searched < 0.9 * speech_s:
        why = (
            f"the {len(windows)} window(s) searched hold {searched:.0f} s of the {speech_s:.0f} s of speech "
            f"(try more --windows)"
        )
    else:
        why = (
            f"the speech has only {found} separate stretch(es) of {lo:.1f}-{hi:.1f} s without a pause over "
            f"{opts.max_pause_s:.1f} s (try a larger --max-pause or a shorter --length)"
        )
    return f"found {found} of the {opts.clips} clips asked for: {why}"


# ----------------------------------------------------------------------------- pipeline


@dataclass
class _Scan:
    """What one run reads: the source, its trim, and the cache folder keyed by the file's content."""

    source: SourceMedia
    trim: TrimRange
    file_hash: str
    cache_dir: Path
    scan_end: float  # seconds in the source; trim end or --max-scan-seconds, whichever is first

    @property
    def range_key(self) -> str:
        return f"{int(round(self.trim.start * 1000))}-{int(round(self.scan_end * 1000))}"

    def where(self) -> str:
        """' between a and b' for messages when the user trimmed, else ''."""
        if not (self.trim.start or self.trim.end):
            return ""
        return f" between {format_timestamp(self.trim.start)} and {format_timestamp(self.scan_end)}"


@dataclass
class _WindowAudio:
    """One separated window: the audio clips are cut from, and where speech is in it."""

    samples: np.ndarray
    from_vocals: bool
    spans: list[Span]


@contextmanager
def _timed(timings: dict[str, float], key: str):
    start = time.monotonic()
    try:
        yield
    finally:
        timings[key] = time.monotonic() - start


class VoiceSplitter:
    """Holds the models (VAD always, Demucs when first needed) so a process can split several sources."""

    def __init__(self, cache_root: Path, downloads: Path, progress: ProgressFn | None = None):
        self.cache_root = Path(cache_root)
        self.downloads = Path(downloads)
        self.progress = Reporter(progress)
        self.vad = load_vad()
        self._separator: LoadedSeparator | None = None
        self._encoder: SpeakerEncoder | None = None
        self._samples: dict[Path, tuple[np.ndarray, list[Span]]] = {}

    def separator(self, options: SeparatorOptions) -> LoadedSeparator:
        if self._separator is None or self._separator.options != options:
            self._separator = load_separator(options, self.progress.sink)
        return self._separator

    def speaker_encoder(self) -> SpeakerEncoder:
        if self._encoder is None:
            self._encoder = SpeakerEncoder()
        return self._encoder

    def prepare(self, opts: SplitOptions, listing: bool = False) -> None:
        """Check the --match sample and load Demucs now (if it will be needed), so a bad sample or a
        missing model fails before any download. `listing`: for `list_speakers` (no Demucs)."""
        opts.validate()
        self._speakers_possible(opts, listing)
        if opts.speaker.match is not None:
            self.match_sample(opts.speaker.match)
        if opts.separate and not listing:
            self.separator(opts.separator)

    @staticmethod
    def _speakers_possible(opts: SplitOptions, listing: bool = False) -> bool:
        """Whether the speaker stage can run; a UserError when the user asked for one speaker (or a
        listing) and Resemblyzer is missing (auto then keeps every voice, with a warning)."""
        if listing and not encoder_available():
            raise UserError(f"--list-speakers: {NEEDS_ENCODER}: pip install 'py-audio-box[qa]'")
        if not opts.find_speakers or encoder_available():
            return opts.find_speakers
        if opts.speaker != SpeakerChoice():
            raise UserError(f"--speaker N and --match: {NEEDS_ENCODER}: pip install 'py-audio-box[qa]'")
        return False

    def match_sample(self, path: Path) -> tuple[np.ndarray, list[Span]]:
        """The --match sample at 16 kHz and its speech spans; a UserError when it holds no speech."""
        path = Path(path)
        if path not in self._samples:
            audio = load_audio(path, VAD_SAMPLE_RATE).samples
            spans = self.vad.speech_spans(audio, VAD_SAMPLE_RATE)
            if speech_seconds(spans) < 1.0:
                raise UserError(
                    f"--match {path.name}: only {speech_seconds(spans):.1f} s of speech; "
                    "give a sample with at least a few seconds of the wanted voice"
                )
            self._samples[path] = (audio, spans)
        return self._samples[path]

    def run(
        self, opts: SplitOptions, source: SourceMedia | None = None, trim: TrimRange | None = None
    ) -> SplitResult:
        """All stages in order; `source`/`trim` from an earlier `resolve` skip stage 1."""
        timings: dict[str, float] = {}
        warnings: list[str] = []
        t0 = time.monotonic()
        with _timed(timings, "source_s"):
            if source is None or trim is None:
                source, trim = self.resolve(opts)
        with _timed(timings, "hash_s"):
            scan = self._scan(opts, source, trim)
        with _timed(timings, "vad_s"):
            raw_spans, total_s = self.speech_map(opts, scan)
        speech_total = speech_seconds(raw_spans)
        if speech_total < 1.0:
            raise UserError(
                f"no speech found in {source.path.name}{scan.where()} (VAD found {speech_total:.1f} s)"
            )
        selection = None
        if opts.find_speakers and not self._speakers_possible(opts):
            warnings.append(
                f"every voice kept: {NEEDS_ENCODER} (pip install 'py-audio-box[qa]'), so the clips may mix speakers"
            )
        elif opts.find_speakers:
            with _timed(timings, "speakers_s"):
                selection = self.speakers(opts, scan, raw_spans)
        regions = selection.regions if selection else None
        if regions is not None:
            self._require_clean_speech(opts, selection, min(3.0, opts.clip_bounds()[0]))
        windows = self.speech_windows(
            opts, raw_spans if regions is None else restrict_spans(raw_spans, regions), total_s, warnings
        )
        with _timed(timings, "separate_s"):
            sep = self.separator(opts.separator) if opts.separate else None
            audio, separated_s = self.window_audio(opts, scan, windows, raw_spans, sep, warnings)
            scored = self.score_candidates(opts, windows, audio, regions)
            if sep is not None:
                self.progress.end("separate", f"{separated_s:.0f} s of {total_s:.0f} s")
        if not scored:
            if regions is not None:
                self._require_clean_speech(opts, selection, float("inf"))
            lo, _hi = opts.clip_bounds()
            raise UserError(
                f"no usable speech in {source.path.name}{scan.where()}: no stretch of at least {lo:.1f} s "
                f"without a pause over {opts.max_pause_s:.1f} s"
            )
        with _timed(timings, "export_s"):
            clips, reference, ref_samples = self.export(opts, scan, windows, audio, scored, selection)
        if len(clips) < opts.clips:
            speech_s = speech_total if regions is None else speech_seconds(restrict_spans(raw_spans, regions))
            warnings.append(clip_shortfall(opts, len(clips), speech_s, windows, scan.where()))
        timings["total_s"] = time.monotonic() - t0

        result = SplitResult(
            source=source,
            trim=trim,
            clips=clips,
            reference=reference,
            out_dir=Path(opts.out_dir) if opts.out_dir else None,
            cache_dir=scan.cache_dir,
            raw_spans=raw_spans,
            windows=windows,
            timings=timings,
            stats={
                "audio_s": round(total_s, 3),
                "speech_s": round(speech_total, 3),
                "separated_s": round(separated_s, 3),
                "separated_share": round(separated_s / total_s, 4) if total_s else 0.0,
                "windows": len(windows),
                "candidates": len(scored),
                "separator": ({"model": sep.name, "fingerprint": sep.fingerprint} if sep else None),
            },
            warnings=warnings,
            reference_samples=ref_samples,
            speakers=selection,
        )
        for w in warnings:
            log.warning(w)
        write_manifest(result)
        return result

    # -- stage 1: source
    def resolve(self, opts: SplitOptions) -> tuple[SourceMedia, TrimRange]:
        opts.validate()
        source = resolve_source(
            url=opts.url,
            audio=opts.audio,
            downloads=self.downloads,
            cookies=opts.cookies,
            progress=self.progress.sink,
            limits=opts.limits,
            span=TrimRange(opts.start or 0.0, opts.end),
        )
        trim = validate_trim(opts.start, opts.end, source.duration)
        return source, trim

    def _scan(self, opts: SplitOptions, source: SourceMedia, trim: TrimRange) -> _Scan:
        """Cache keys: the content hash of the file, then the scanned range."""
        file_hash = sha256_file(source.path)
        scan_end = trim.end if trim.end is not None else source.duration
        if opts.max_scan_s:
            scan_end = min(scan_end, trim.start + opts.max_scan_s)
        return _Scan(source, trim, file_hash, self.cache_root / file_hash[:16], scan_end)

    # -- stage 2: raw VAD on the trimmed audio
    def speech_map(self, opts: SplitOptions, scan: _Scan) -> tuple[list[Span], float]:
        """Speech spans of the scanned range (seconds from the trim start) and its length."""
        path = scan.cache_dir / f"vad_{scan.range_key}_{sha256_json(RAW_VAD.key())[:8]}.json"
        self.progress.start("vad", scan.scan_end - scan.trim.start, "s")

        def compute() -> dict:
            audio16 = scan.source.read(
                VAD_SAMPLE_RATE,
                start=scan.trim.start,
                end=scan.scan_end,
                max_duration=max(opts.limits.max_duration_s, MAX_DECODE_S),
            ).samples
            total_s = audio16.size / VAD_SAMPLE_RATE
            spans = self.vad.speech_spans(
                audio16,
                VAD_SAMPLE_RATE,
                settings=RAW_VAD,
                progress=self.progress.shifted("vad", 0.0, total_s),
            )
            return {
                "version": SPLIT_CACHE_VERSION,
                "source_sha256": scan.file_hash,
                "trim": [scan.trim.start, scan.scan_end],
                "audio_s": total_s,
                "settings": RAW_VAD.key(),
                "spans": [s.to_list() for s in spans],
            }

        data, reused = cached_json(
            path,
            refresh=opts.refresh,
            make=compute,
            valid=lambda d: d.get("version") == SPLIT_CACHE_VERSION,
        )
        spans = [Span(float(a), float(b)) for a, b in data["spans"]]
        self.progress.end("vad", "cached" if reused else f"{speech_seconds(spans):.0f} s speech")
        return spans, float(data["audio_s"])

    # -- stage 2b: who speaks when, and whose clips to keep
    def speaker_map(self, opts: SplitOptions, scan: _Scan, raw_spans: list[Span]) -> SpeakerMap:
        """The speakers of the scanned range (times from the trim start), cached like the VAD map."""
        settings = opts.speaker_settings
        key = sha256_json({"vad": RAW_VAD.key(), "speakers": settings.key()})[:8]
        path = scan.cache_dir / f"speakers_{scan.range_key}_{key}.json"
        self.progress.start("speakers", speech_seconds(raw_spans), "s")

        def compute() -> dict:
            from audiobox.speakers import find_speakers

            audio16 = scan.source.read(VAD_SAMPLE_RATE, start=scan.trim.start, end=scan.scan_end).samples
            smap = find_speakers(
                audio16,
                raw_spans,
                self.speaker_encoder(),
                settings,
                progress=self.progress.shifted("speakers", 0.0, speech_seconds(raw_spans)),
            )
            return smap.to_json() | {
                "source_sha256": scan.file_hash,
                "trim": [scan.trim.start, scan.scan_end],
            }

        def valid(data: dict) -> bool:
            try:
                SpeakerMap.from_json(data, settings)
            except (ValueError, KeyError, TypeError):
                return False
            return True

        data, reused = cached_json(path, refresh=opts.refresh, make=compute, valid=valid)
        smap = SpeakerMap.from_json(data, settings)
        count = len(smap.speakers)
        self.progress.end(
            "speakers", ("cached, " if reused else "") + f"{count} speaker{'s' if count != 1 else ''}"
        )
        return smap

    def speakers(self, opts: SplitOptions, scan: _Scan, raw_spans: list[Span]) -> SpeakerSelection:
        """The speaker map and the speaker `opts.speaker` asks for."""
        smap = self.speaker_map(opts, scan, raw_spans)
        sample = None
        if opts.speaker.match is not None and smap.speakers:
            audio, spans = self.match_sample(opts.speaker.match)
            sample = self.speaker_encoder().embed_speech(audio, VAD_SAMPLE_RATE, spans)
        return SpeakerSelection(smap, choose_speaker(smap, opts.speaker, sample))

    @staticmethod
    def _require_clean_speech(opts: SplitOptions, selection: SpeakerSelection, need_s: float) -> None:
        """A UserError naming the speakers when the chosen one has too little clean speech."""
        chosen = selection.chosen
        clean = selection.map.usable_s(chosen.speaker.id)
        if clean >= need_s:
            return
        need = (
            f"a reference needs at least {min(need_s, 3.0):.1f} s"
            if need_s < float("inf")
            else (f"no stretch of at least {opts.clip_bounds()[0]:.1f} s came out of it")
        )
        raise UserError(
            f"speaker {chosen.speaker.id} ({chosen.reason}) has too little clean speech for a reference: "
            f"{clean:.1f} s where that voice talks alone in turns of at least "
            f"{opts.speaker_settings.min_turn_s:.1f} s ({need}). Speakers found: "
            + "; ".join(speaker_lines(selection.map))
            + ". Pick another with --speaker N or --match FILE."
        )

    def list_speakers(
        self,
        opts: SplitOptions,
        source: SourceMedia | None = None,
        trim: TrimRange | None = None,
        sample_dir: Path | None = None,
        sample_s: float = 8.0,
    ) -> SpeakerListing:
        """Stages 1, 2 and the speaker stage only; writes `speaker_<id>.wav` samples into `sample_dir`."""
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        if source is None or trim is None:
            source, trim = self.resolve(opts)
        scan = self._scan(opts, source, trim)
        raw_spans, total_s = self.speech_map(opts, scan)
        if speech_seconds(raw_spans) < 1.0:
            raise UserError(f"no speech found in {source.path.name}{scan.where()}")
        with _timed(timings, "speakers_s"):
            selection = self.speakers(opts, scan, raw_spans)
        samples: dict[int, tuple[Path, Span]] = {}
        if sample_dir is not None:
            sample_dir.mkdir(parents=True, exist_ok=True)
            for speaker in selection.map.speakers:
                span = selection.map.sample_span(speaker.id, sample_s)
                if span is None:
                    continue
                in_source = span.shifted(trim.start)
                mix = source.read(TTS_SAMPLE_RATE, start=in_source.start, end=in_source.end).samples
                path = sample_dir / f"speaker_{speaker.id}.wav"
                write_audio(path, _fade(mix, TTS_SAMPLE_RATE), TTS_SAMPLE_RATE, "wav")
                samples[speaker.id] = (path, in_source)
        timings["total_s"] = time.monotonic() - t0
        return SpeakerListing(source, trim, selection, samples, total_s, speech_seconds(raw_spans), timings)

    def speaker_listing(self, opts: SplitOptions, work: Path) -> SpeakerListing:
        """--list-speakers: who talks in the source, a sample of each in <work>/<source id>/speakers/."""
        self.prepare(opts, listing=True)
        source, trim = self.resolve(opts)
        return self.list_speakers(opts, source, trim, sample_dir=work / source.source_id / "speakers")

    # -- stage 3: speech-dense windows
    def speech_windows(
        self, opts: SplitOptions, raw_spans: list[Span], total_s: float, warnings: list[str]
    ) -> list[Window]:
        window_s = opts.window_len()
        count = opts.windows or max(1, math.ceil((opts.clips + 1) * opts.length / (0.6 * window_s)) + 1)
        windows = select_windows(raw_spans, window_s, count, opts.min_density, total_s)
        if not windows:  # sparse speech everywhere: take the densest windows anyway
            windows = select_windows(raw_spans, window_s, count, 0.0, total_s)
            warnings.append(
                "speech is sparse (no window is at least "
                f"{opts.min_density:.0%} speech); using the densest parts anyway"
            )
        return windows

    # -- stage 4: vocals + second VAD pass, per window
    def window_audio(
        self,
        opts: SplitOptions,
        scan: _Scan,
        windows: list[Window],
        raw_spans: list[Span],
        sep: LoadedSeparator | None,
        warnings: list[str],
    ) -> tuple[list[_WindowAudio], float]:
        """Per window: the vocals (or the mix without Demucs) and their speech; seconds separated."""
        window_total = sum(w.end - w.start for w in windows)
        if sep is not None:
            self.progress.start("separate", window_total, "s")
        out: list[_WindowAudio] = []
        separated_s = done_s = 0.0
        for win in windows:
            start, end = scan.trim.start + win.start, scan.trim.start + win.end
            mix = scan.source.read(TTS_SAMPLE_RATE, start=start, end=end).samples
            voc, from_vocals = mix, False
            if sep is not None:
                voc = self._vocals(
                    sep,
                    scan,
                    start,
                    end,
                    mix,
                    opts.refresh,
                    self.progress.shifted("separate", done_s, window_total),
                )
                separated_s += win.end - win.start
                from_vocals = True
            done_s += win.end - win.start
            spans = self.vad.speech_spans(voc, TTS_SAMPLE_RATE, settings=VOCAL_VAD)
            raw_in = speech_seconds([s for s in raw_spans if s.start >= win.start and s.end <= win.end])
            if from_vocals and speech_seconds(spans) < 0.3 * raw_in:
                warnings.append(
                    f"the vocals of {format_timestamp(start)}-{format_timestamp(end)} lost the speech "
                    f"({speech_seconds(spans):.1f} s vs {raw_in:.1f} s in the mix); using the mix there"
                )
                voc, from_vocals = mix, False
                spans = self.vad.speech_spans(voc, TTS_SAMPLE_RATE, settings=VOCAL_VAD)
            out.append(_WindowAudio(voc, from_vocals, spans))
        return out, separated_s

    def _vocals(
        self,
        sep: LoadedSeparator,
        scan: _Scan,
        start: float,
        end: float,
        mix: np.ndarray,
        refresh: bool,
        progress: ProgressFn,
    ) -> np.ndarray:
        path = (
            scan.cache_dir
            / "vocals"
            / f"{sep.fingerprint}_{int(round(start * 1000))}-{int(round(end * 1000))}.wav"
        )

        def load(p: Path) -> np.ndarray | None:
            try:
                audio = load_audio(p)
            except UserError:
                return None
            if audio.sample_rate != TTS_SAMPLE_RATE or abs(audio.samples.size - mix.size) > 2:
                return None
            return audio.samples[: mix.size]

        def make(p: Path) -> np.ndarray:
            vocals = sep.vocals(mix, TTS_SAMPLE_RATE, progress=progress)
            write_audio(p, vocals, TTS_SAMPLE_RATE, "wav")  # written to a temp name, then renamed
            return vocals

        vocals, _reused = cached_file(path, refresh=refresh, load=load, make=make)
        progress(ProgressEvent("separate", done=end - start))
        return vocals

    # -- stage 5: candidate clips, scored
    def score_candidates(
        self,
        opts: SplitOptions,
        windows: list[Window],
        audio: list[_WindowAudio],
        regions: list[Span] | None = None,
    ) -> list[tuple[float, Span, Any]]:
        """(score, span in the scanned range, (window index, measures)) for every candidate clip.

        With `regions` (the chosen speaker's, in the scanned range) a clip lies inside one of them.
        """
        lo, hi = opts.clip_bounds()
        scored: list[tuple[float, Span, Any]] = []
        for allow_short in (False, True):
            for wi, (win, wa) in enumerate(zip(windows, audio)):
                spans = wa.spans
                if regions is not None:
                    spans = restrict_spans(spans, [r.shifted(-win.start) for r in regions], min_s=0.25)
                for cand in candidate_clips(spans, lo, hi, opts.length, opts.max_pause_s, allow_short):
                    if regions is not None and not within_one(cand.shifted(win.start), regions):
                        continue
                    a, b = int(cand.start * TTS_SAMPLE_RATE), int(cand.end * TTS_SAMPLE_RATE)
                    inner = [
                        Span(s.start - cand.start, s.end - cand.start)
                        for s in spans
                        if s.start >= cand.start - 1e-6 and s.end <= cand.end + 1e-6
                    ]
                    score, measures = measure_clip(wa.samples[a:b], TTS_SAMPLE_RATE, inner)
                    scored.append((score, cand.shifted(win.start), (wi, measures)))
            if scored:
                break
        return scored

    # -- stage 6: rank, export
    def export(
        self,
        opts: SplitOptions,
        scan: _Scan,
        windows: list[Window],
        audio: list[_WindowAudio],
        scored: list[tuple[float, Span, Any]],
        selection: SpeakerSelection | None = None,
    ) -> tuple[list[Clip], Clip | None, np.ndarray | None]:
        """The best clips (written when opts.out_dir is set), the reference clip and its samples.

        With a speaker `selection` each clip records that speaker and its similarity to it."""
        best_first = pick_clips(scored, max(opts.clips, 1), opts.length)[: opts.clips]
        reference = self._pick_reference(scored)
        out_dir = Path(opts.out_dir) if opts.out_dir else None
        self.progress.start("export", len(best_first) + 1, "clips")

        def cut(span: Span, wi: int) -> np.ndarray:
            a = int(round((span.start - windows[wi].start) * TTS_SAMPLE_RATE))
            b = int(round((span.end - windows[wi].start) * TTS_SAMPLE_RATE))
            return _fade(audio[wi].samples[max(0, a) : b], TTS_SAMPLE_RATE)

        def clip(index: int, path: Path | None, item) -> Clip:
            score, span, (wi, measures) = item
            offset = scan.trim.start
            speaker = similarity = None
            if selection is not None:
                speaker = selection.chosen.speaker.id
                similarity = selection.map.similarity_in(span, speaker)
            return Clip(
                index,
                path,
                span.start + offset,
                span.end + offset,
                score,
                measures,
                audio[wi].from_vocals,
                wi,
                speaker,
                similarity,
            )

        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._remove_previous(out_dir)
        clips: list[Clip] = []
        for k, item in enumerate(best_first, start=1):
            _score, span, (wi, _measures) = item
            path = None
            if out_dir is not None:
                path = out_dir / f"clip_{k:02d}_{span.start + scan.trim.start:07.1f}s.wav"
                write_audio(path, cut(span, wi), TTS_SAMPLE_RATE, "wav")
            clips.append(clip(k, path, item))
            self.progress.update("export", k)
        ref_clip, ref_samples = None, None
        if reference is not None:
            _score, span, (wi, _measures) = reference
            ref_samples = cut(span, wi)
            path = out_dir / "reference.wav" if out_dir is not None else None
            if path is not None:
                write_audio(path, ref_samples, TTS_SAMPLE_RATE, "wav")
            ref_clip = clip(0, path, reference)
        self.progress.end("export", f"{len(clips)} clips" + (" + reference" if ref_clip else ""))
        return clips, ref_clip, ref_samples

    @staticmethod
    def _pick_reference(scored):
        """The best candidate that is long enough to clone from (>= 3 s; 5-15 s preferred)."""

        def rank(item):
            score, span, _ = item
            d = span.duration
            fit = 0.0 if 5.0 <= d <= 15.0 else min(abs(d - 5.0), abs(d - 15.0)) * 0.02
            return (-(score - fit), span.start)

        usable = [it for it in scored if it[1].duration >= 3.0] or scored
        return min(usable, key=rank) if usable else None

    @staticmethod
    def _remove_previous(out_dir: Path) -> None:
        """Delete the clips of an earlier run into the same folder (only files it listed)."""
        old = read_json(out_dir / "clips.json") or {}
        for entry in (old.get("clips") or []) + ([old["reference"]] if old.get("reference") else []):
            name = entry.get("file") if isinstance(entry, dict) else None
            if name and "/" not in name and name.endswith(".wav"):
                (out_dir / name).unlink(missing_ok=True)


def use_clip_as_reference(result: SplitResult, number: int) -> None:
    """Make exported clip `number` (1-based) the reference; reference.wav and clips.json follow."""
    if not 1 <= number <= len(result.clips):
        raise UserError(f"there is no clip {number} (the split exported {len(result.clips)})")
    clip = result.clips[number - 1]
    if clip.path is None:
        raise UserError("the clips were not written (no output folder), so none can become the reference")
    samples = load_audio(clip.path).samples
    path = result.reference.path if result.reference else None
    if path is not None:
        write_audio(path, samples, TTS_SAMPLE_RATE, "wav")
    result.reference = replace(clip, index=0, path=path)
    result.reference_samples = samples
    result.reference_chosen_by = "user"
    write_manifest(result)


def register_reference_clip(registry, slug: str, result: SplitResult, display_name=None, replace=False):
    """Register the split's reference clip as a clone voice (ref.wav + source); a prompt is added later
    (`voice-clone synth --voice SLUG` transcribes it). The clip is its own recording (source.wav)."""
    from audiobox.audio import Audio
    from audiobox.voices import clone_record, ref_record, reference_files

    if result.reference_samples is None:
        raise UserError("no reference clip to register")
    ref = Audio(result.reference_samples, TTS_SAMPLE_RATE)
    record = clone_record(
        display_name=display_name,
        ref=ref_record(
            ref.duration,
            ref.sample_rate,
            None,
            None,
            origin="voice-split",
            source_start=round(result.reference.start, 3),
            source_end=round(result.reference.end, 3),
            measures=result.reference.measures,
        ),
        source=result.source_record(),
    )
    return registry.create(slug, record, write_files=reference_files(ref), replace=replace)


def write_manifest(result: SplitResult) -> None:
    """clips.json in the output folder (nothing without one)."""
    if result.out_dir is not None:
        atomic_write_json(result.out_dir / "clips.json", manifest(result))


def manifest(result: SplitResult) -> dict:
    return {
        "source": result.source.meta,
        "source_file": str(result.source.path),
        "source_duration": round(result.source.duration, 3),
        "trim": [result.trim.start, result.trim.end],
        "sample_rate": TTS_SAMPLE_RATE,
        "clips": [c.to_json() for c in result.clips],
        "reference": (
            result.reference.to_json() | {"file": "reference.wav", "chosen_by": result.reference_chosen_by}
            if result.reference
            else None
        ),
        "windows": [
            {"start": round(w.start, 3), "end": round(w.end, 3), "speech_s": round(w.speech_s, 3)}
            for w in result.windows
        ],
        "speakers": result.speakers.to_json() if result.speakers else None,
        "stats": result.stats,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "warnings": result.warnings,
    }
