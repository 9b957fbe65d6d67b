"""Who speaks when: speaker embeddings, speaker changes, clustering, and choosing one speaker.

voice-split used to rank clips by quality alone, so in an interview the clips and the reference could
come from either voice, or both. This module finds the speakers in the speech map and says which
stretches belong to one chosen speaker only.

How (all offline, CPU):
  1. embed   Resemblyzer's GE2E encoder (weights inside its wheel) on 1.6 s windows every 0.8 s
             inside each speech span (the VAD's map; pauses are never embedded).
  2. changes inside a span, the cosine distance between the window just before and the window just
             after each point; a peak over `change_threshold` starts a new segment (turns that
             follow each other without a pause).
  3. cluster segments of at least `min_segment_s` are grouped by average-linkage agglomerative
             clustering on cosine distance, cut at `cluster_threshold`: the number of speakers is
             found, never given. A group with under `min_speaker_s` of speech is not a speaker.
  4. assign  every segment goes to its closest speaker if it is close enough (`min_similarity`);
             overlapping voices and noise sit between speakers and stay unassigned ("unclear").
  5. turns   runs of one speaker's segments; turns under `min_turn_s` (interjections) are left
             out of the usable regions, and so is `change_margin_s` either side of a change found
             inside continuous speech: that is where one voice starts before the other stops.
             The encoder alone does not hear two voices at once (on test speech an overlap scored
             0.78 to the voice that came in, as high as that voice under music), so overlaps are
             kept out by where they happen, and segments close to no speaker stay "unclear".
Speakers are ranked by speech time (1 = the most). `choose_speaker` picks by rank, automatically
(rank 1) or by similarity to a sample of the wanted voice.
"""

from __future__ import annotations

import sys
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audiobox.errors import UserError
from audiobox.progress import ProgressEvent, ProgressFn
from audiobox.vad import Span

ENCODER_NAME = "resemblyzer-ge2e"
ENCODER_RATE = 16000
FRAME_S = 0.01  # the encoder's mel hop
WINDOW_FRAMES = 160  # the encoder's 1.6 s partial utterance
HOP_FRAMES = 80  # 0.8 s between windows (half a window: the LSTM cost is ~1.25 windows per second)
WINDOW_S = WINDOW_FRAMES * FRAME_S
LEVEL_DBFS = -20.0  # every span is brought to this level, so loudness does not move the embedding
BATCH_WINDOWS = 128
SPEAKERS_VERSION = 1
NEEDS_ENCODER = "telling speakers apart needs Resemblyzer"


# --------------------------------------------------------------------------------------------
# The encoder


def _import_resemblyzer():
    """Import Resemblyzer without its VAD dependency.

    `resemblyzer.audio` imports webrtcvad at module level, and the webrtcvad 2.0.10 sdist imports
    pkg_resources, which setuptools >= 81 no longer ships. We never call Resemblyzer's VAD (we trim
    silence ourselves), so if that import fails we give it a stand-in module that refuses to work.
    """
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning, module="resemblyzer")
    try:
        import resemblyzer

        return resemblyzer
    except ModuleNotFoundError as exc:
        if exc.name not in ("webrtcvad", "pkg_resources"):
            raise UserError(f"{NEEDS_ENCODER}: pip install 'py-audio-box[qa]'") from exc
    for name in [
        m for m in sys.modules if m == "resemblyzer" or m.startswith("resemblyzer.") or m == "webrtcvad"
    ]:
        del sys.modules[name]
    stand_in = types.ModuleType("webrtcvad")

    def _unavailable(*_a, **_k):
        raise RuntimeError("webrtcvad is not usable here; audiobox trims silence itself")

    stand_in.Vad = _unavailable
    sys.modules["webrtcvad"] = stand_in
    import resemblyzer

    return resemblyzer


_MEL_BASIS: list[np.ndarray] = []


def _mel_basis(n_fft: int = 400, n_mels: int = 40, rate: int = ENCODER_RATE) -> np.ndarray:
    """Slaney-style mel filterbank (what librosa.filters.mel gives with its defaults), in numpy."""
    if _MEL_BASIS:
        return _MEL_BASIS[0]

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    _MEL_BASIS.append(weights.astype(np.float32))
    return _MEL_BASIS[0]


def mel_frames(wav: np.ndarray, n_fft: int = 400, hop: int = 160) -> np.ndarray:
    """(frames, 40) power mel spectrogram, 25 ms Hann windows every 10 ms, centred: the encoder's input.

    Same numbers as Resemblyzer's `wav_to_mel_spectrogram` (librosa), without librosa: its first
    call in a process JIT-loads numba code, 10-20 s on a busy 2-core box.
    """
    padded = np.pad(np.asarray(wav, np.float32), n_fft // 2)
    count = 1 + max(0, padded.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
    return (power.astype(np.float32) @ _mel_basis(n_fft).T).astype(np.float32)


def encoder_available() -> bool:
    """Whether Resemblyzer is installed (the `qa` extra), without importing it (or torch)."""
    import importlib.util

    return importlib.util.find_spec("resemblyzer") is not None


def _at_level(x: np.ndarray, dbfs: float = LEVEL_DBFS, max_gain: float = 10.0) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12
    return np.clip(x * min(max_gain, 10 ** (dbfs / 20) / rms), -1, 1).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-9)).astype(np.float32)


class SpeakerEncoder:
    """Resemblyzer's GE2E encoder (weights inside its wheel): 256-d unit embeddings at 16 kHz."""

    name = ENCODER_NAME
    sample_rate = ENCODER_RATE

    def __init__(self, device: str = "cpu") -> None:
        resemblyzer = _import_resemblyzer()
        self._encoder = resemblyzer.VoiceEncoder(device=device, verbose=False)

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """One embedding for a whole utterance (leading/trailing silence cut), or None if under 0.5 s."""
        from audiobox.audio import resample

        wav = _trim_silence(resample(samples, sample_rate, self.sample_rate), self.sample_rate)
        if len(wav) < self.sample_rate // 2:  # under 0.5 s of sound: nothing to compare
            return None
        return _unit(self._encoder.embed_utterance(_at_level(wav)))

    def embed_windows(
        self,
        audio: np.ndarray,
        spans: list[Span],
        progress: ProgressFn | None = None,
    ) -> WindowEmbeddings:
        """Embeddings of 1.6 s windows every 0.8 s inside each span of 16 kHz `audio`.

        `progress` gets a "speakers" event (seconds of speech done) after each span.

        A span shorter than a window gives one zero-padded window. Memory stays bounded: windows
        go through the encoder in batches as the spans are read.
        """
        import torch

        times: list[tuple[float, float]] = []
        owners: list[int] = []
        starts: list[int] = []
        parts: list[np.ndarray] = []
        batch: list[np.ndarray] = []

        def flush() -> None:
            if batch:
                with torch.no_grad():
                    out = self._encoder(torch.from_numpy(np.stack(batch)).to(self._encoder.device))
                parts.append(out.cpu().numpy().astype(np.float32))
                batch.clear()

        done, total = 0.0, sum(span.duration for span in spans)
        for k, span in enumerate(spans):
            a, b = int(round(span.start * ENCODER_RATE)), int(round(span.end * ENCODER_RATE))
            wav = audio[max(0, a) : b]
            if wav.size == 0:
                continue
            mel = mel_frames(_at_level(wav))
            if mel.shape[0] < WINDOW_FRAMES:
                mel = np.pad(mel, ((0, WINDOW_FRAMES - mel.shape[0]), (0, 0)))
            last = mel.shape[0] - WINDOW_FRAMES
            offsets = list(range(0, last + 1, HOP_FRAMES))
            if offsets[-1] != last:
                offsets.append(last)
            for f in offsets:
                batch.append(mel[f : f + WINDOW_FRAMES])
                times.append(
                    (span.start + f * FRAME_S, min(span.end, span.start + (f + WINDOW_FRAMES) * FRAME_S))
                )
                owners.append(k)
                starts.append(f)
                if len(batch) >= BATCH_WINDOWS:
                    flush()
            done += span.duration
            if progress is not None:
                progress(ProgressEvent("speakers", done=done, total=total, unit="s"))
        flush()
        emb = np.concatenate(parts) if parts else np.zeros((0, 256), np.float32)
        return WindowEmbeddings(
            np.asarray(times, np.float64).reshape(-1, 2),
            _unit(emb),
            np.asarray(owners, np.int64),
            np.asarray(starts, np.int64),
        )

    def embed_speech(self, samples: np.ndarray, sample_rate: int, spans: list[Span]) -> np.ndarray | None:
        """One embedding for the speech in `spans` (seconds) of a signal: the mean of its windows."""
        from audiobox.audio import resample

        audio = resample(np.asarray(samples, np.float32), sample_rate, self.sample_rate)
        windows = self.embed_windows(audio, [s for s in spans if s.duration > 0])
        if not len(windows.embeddings):
            return None
        return _unit(windows.embeddings.mean(axis=0))


def _trim_silence(x: np.ndarray, sr: int, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing audio quieter than floor_db below the loudest 20 ms frame."""
    frame = max(1, int(0.02 * sr))
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-9
    active = np.nonzero(20 * np.log10(rms / rms.max()) > floor_db)[0]
    if active.size == 0:
        return x[:0]
    return x[active[0] * frame : (active[-1] + 1) * frame]


@dataclass
class WindowEmbeddings:
    times: np.ndarray  # (n, 2) seconds
    embeddings: np.ndarray  # (n, 256) unit vectors
    span_index: np.ndarray  # (n,) which span each window came from
    frame_offset: np.ndarray  # (n,) the window's first mel frame inside its span


# --------------------------------------------------------------------------------------------
# Settings and results


@dataclass(frozen=True)
class SpeakerSettings:
    """How windows become speakers. Thresholds are cosine distances/similarities of GE2E embeddings:
    on test speech one voice scores 0.83-0.95 against itself (music under it included) and
    0.42-0.65 against another voice."""

    change_threshold: float = 0.35  # distance between the windows either side of a point: a change
    cluster_threshold: float = 0.3  # segments closer than this (average linkage) are one speaker
    min_similarity: float = 0.72  # a segment less similar than this to every speaker is unclear
    min_segment_s: float = 1.0  # shorter segments do not shape the clusters
    min_speaker_s: float = 3.0  # a cluster with less speech is not reported as a speaker
    min_turn_s: float = 1.0  # shorter turns never give clips
    change_margin_s: float = 2.0  # left out either side of a change inside continuous speech (overlaps)

    def key(self) -> dict:
        return {"encoder": ENCODER_NAME, "version": SPEAKERS_VERSION, **asdict(self)}

    def validate(self) -> None:
        for name in ("change_threshold", "cluster_threshold", "min_similarity"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise UserError(f"speaker setting {name} must be between 0 and 1")
        if min(self.min_segment_s, self.min_speaker_s, self.min_turn_s, self.change_margin_s) < 0:
            raise UserError("speaker durations must not be negative")


@dataclass(frozen=True)
class Segment:
    """A stretch of continuous speech with one voice (or none clear). Seconds in the analysed signal."""

    start: float
    end: float
    speaker: int | None  # speaker id (rank, 1 = most speech); None: unclear (overlap, noise, too short)
    similarity: float  # cosine to its speaker's centroid (to the closest one when unclear)
    cut_before: bool = False  # starts at a detected change, not after a pause
    cut_after: bool = False  # ends at a detected change

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Turn:
    """Consecutive segments of one speaker, with no other or unclear voice between them."""

    start: float
    end: float
    speaker: int
    speech_s: float
    similarity: float
    cut_before: bool
    cut_after: bool


@dataclass(frozen=True)
class Speaker:
    id: int  # rank by speech time, 1 = the most
    speech_s: float
    turns: int
    similarity: float  # mean cosine of its segments to its centroid: how consistent the voice is
    centroid: np.ndarray = field(repr=False, compare=False)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "speech_s": round(self.speech_s, 3),
            "turns": self.turns,
            "similarity": round(self.similarity, 4),
        }


@dataclass
class SpeakerMap:
    speakers: list[Speaker]
    segments: list[Segment]
    turns: list[Turn]
    settings: SpeakerSettings

    def speaker(self, speaker_id: int) -> Speaker:
        for s in self.speakers:
            if s.id == speaker_id:
                return s
        raise KeyError(speaker_id)

    @property
    def unclear_s(self) -> float:
        return float(sum(s.duration for s in self.segments if s.speaker is None))

    def regions(self, speaker_id: int) -> list[Span]:
        """Where only this speaker talks: turns of at least `min_turn_s`, kept `change_margin_s` away
        from changes found inside continuous speech."""
        margin = self.settings.change_margin_s
        out = []
        for t in self.turns:
            if t.speaker != speaker_id or t.speech_s < self.settings.min_turn_s:
                continue
            start = t.start + (margin if t.cut_before else 0.0)
            end = t.end - (margin if t.cut_after else 0.0)
            if end - start >= self.settings.min_turn_s:
                out.append(Span(round(start, 3), round(end, 3)))
        return out

    def usable_s(self, speaker_id: int) -> float:
        """Seconds of this speaker's speech inside its regions (pauses not counted)."""
        mine = [Span(s.start, s.end) for s in self.segments if s.speaker == speaker_id]
        return float(sum(s.duration for s in restrict_spans(mine, self.regions(speaker_id))))

    def similarity_in(self, span: Span, speaker_id: int) -> float | None:
        """How close the speech in `span` is to the speaker: its segments' cosine to the centroid,
        weighted by how much of each lies in the span (None when none of its segments does)."""
        total = weight = 0.0
        for seg in self.segments:
            overlap = min(span.end, seg.end) - max(span.start, seg.start)
            if seg.speaker == speaker_id and overlap > 0:
                total += seg.similarity * overlap
                weight += overlap
        return round(total / weight, 4) if weight else None

    def sample_span(self, speaker_id: int, max_s: float = 8.0) -> Span | None:
        """A stretch to listen to: the start of the speaker's longest usable region."""
        regions = self.regions(speaker_id)
        if not regions:
            return None
        best = max(regions, key=lambda r: r.duration)
        return Span(best.start, min(best.end, best.start + max_s))

    def to_json(self) -> dict:
        return {
            "version": SPEAKERS_VERSION,
            "settings": self.settings.key(),
            "speakers": [
                s.to_json() | {"centroid": [round(float(v), 6) for v in s.centroid]} for s in self.speakers
            ],
            "segments": [
                [
                    round(s.start, 3),
                    round(s.end, 3),
                    s.speaker,
                    round(s.similarity, 4),
                    s.cut_before,
                    s.cut_after,
                ]
                for s in self.segments
            ],
        }

    @classmethod
    def from_json(cls, data: dict, settings: SpeakerSettings) -> SpeakerMap:
        """Rebuild a cached map; raises ValueError/KeyError/TypeError when it does not fit."""
        if data.get("version") != SPEAKERS_VERSION or data.get("settings") != settings.key():
            raise ValueError("stale speaker map")
        segments = [
            Segment(float(a), float(b), None if sp is None else int(sp), float(sim), bool(cb), bool(ca))
            for a, b, sp, sim, cb, ca in data["segments"]
        ]
        turns = _turns(segments)
        speakers = [
            Speaker(
                int(s["id"]),
                float(s["speech_s"]),
                int(s["turns"]),
                float(s["similarity"]),
                _unit(np.asarray(s["centroid"], np.float32)),
            )
            for s in data["speakers"]
        ]
        return cls(speakers, segments, turns, settings)


# --------------------------------------------------------------------------------------------
# Finding speakers


def change_points(windows: WindowEmbeddings, span_index: int, threshold: float) -> list[float]:
    """Times inside one span where the voice changes: peaks of the distance between the window
    ending at a point and the window starting there, at least one window apart."""
    rows = np.nonzero(windows.span_index == span_index)[0]
    by_offset = {int(windows.frame_offset[r]): r for r in rows}
    scores: list[tuple[float, float]] = []  # (distance, time)
    for f, r in by_offset.items():
        before = by_offset.get(f - WINDOW_FRAMES)
        if before is None or f % HOP_FRAMES:
            continue
        dist = 1.0 - float(windows.embeddings[r] @ windows.embeddings[before])
        scores.append((dist, float(windows.times[r][0])))
    chosen: list[float] = []
    for dist, t in sorted(scores, reverse=True):
        if dist < threshold:
            break
        if all(abs(t - c) >= WINDOW_S - 1e-6 for c in chosen):
            chosen.append(t)
    return sorted(chosen)


def _segment_embedding(windows: WindowEmbeddings, rows: np.ndarray, start: float, end: float) -> np.ndarray:
    """Mean of the span's windows that lie inside [start, end] (or, failing that, that overlap it most)."""
    t = windows.times[rows]
    inside = rows[(t[:, 0] >= start - 1e-6) & (t[:, 1] <= end + 1e-6)]
    if inside.size == 0:
        overlap = np.minimum(t[:, 1], end) - np.maximum(t[:, 0], start)
        inside = rows[overlap >= overlap.max() - 1e-6]
    return _unit(windows.embeddings[inside].mean(axis=0))


def _cluster(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Labels 0..k-1 from average-linkage clustering on cosine distance, cut at `threshold`."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(embeddings.astype(np.float64), method="average", metric="cosine")
    return fcluster(tree, t=threshold, criterion="distance").astype(np.int64) - 1


def _centroids(embeddings: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {
        int(k): _unit((embeddings[labels == k] * weights[labels == k, None]).sum(axis=0))
        for k in np.unique(labels)
        if k >= 0
    }


def find_speakers(
    audio: np.ndarray,
    spans: list[Span],
    encoder: SpeakerEncoder,
    settings: SpeakerSettings | None = None,
    progress: ProgressFn | None = None,
) -> SpeakerMap:
    """Speakers in the speech `spans` (seconds) of 16 kHz mono `audio`; the count is found, not given."""
    settings = settings or SpeakerSettings()
    settings.validate()
    spans = [s for s in spans if s.duration > 0]
    windows = encoder.embed_windows(audio, spans, progress=progress)

    # segments: spans cut at speaker changes
    bounds: list[tuple[float, float, bool, bool, int]] = []
    for k, span in enumerate(spans):
        cuts = change_points(windows, k, settings.change_threshold)
        edges = [span.start, *cuts, span.end]
        for i in range(len(edges) - 1):
            bounds.append((edges[i], edges[i + 1], i > 0, i < len(edges) - 2, k))
    if not bounds:
        return SpeakerMap([], [], [], settings)
    emb = np.stack(
        [
            _segment_embedding(windows, np.nonzero(windows.span_index == k)[0], a, b)
            for a, b, _, _, k in bounds
        ]
    )
    dur = np.array([b - a for a, b, *_ in bounds])

    # clusters of the segments long enough to trust; too-small clusters are not speakers
    reliable = dur >= settings.min_segment_s
    if not reliable.any():
        reliable = dur >= dur.max() - 1e-9
    labels = np.full(len(bounds), -1, np.int64)
    labels[reliable] = _cluster(emb[reliable], settings.cluster_threshold)
    sizes = {int(k): float(dur[labels == k].sum()) for k in np.unique(labels[labels >= 0])}
    keep = [k for k, s in sizes.items() if s >= settings.min_speaker_s] or [max(sizes, key=sizes.get)]
    labels[~np.isin(labels, keep)] = -1

    # assign every segment to its closest centroid (twice: the centroids move once all are in)
    for _ in range(2):
        cents = _centroids(emb, dur, labels)
        ids = sorted(cents)
        sims = emb @ np.stack([cents[k] for k in ids]).T
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(bounds)), best]
        labels = np.where(best_sim >= settings.min_similarity, np.asarray(ids)[best], -1)
        labels[~reliable & (best_sim < settings.min_similarity + 0.1)] = -1  # short pieces must be clear
        if not (labels >= 0).any():
            break

    # rank by speech time
    totals = {int(k): float(dur[labels == k].sum()) for k in np.unique(labels[labels >= 0])}
    rank = {k: i + 1 for i, k in enumerate(sorted(totals, key=lambda k: (-totals[k], k)))}
    segments = [
        Segment(
            round(a, 3),
            round(b, 3),
            rank.get(int(labels[i])),
            round(float(best_sim[i]), 4),
            cut_before,
            cut_after,
        )
        for i, (a, b, cut_before, cut_after, _k) in enumerate(bounds)
    ]
    turns = _turns(segments)
    cents = _centroids(emb, dur, labels)
    speakers = []
    for k, r in sorted(rank.items(), key=lambda kv: kv[1]):
        mine = labels == k
        speakers.append(
            Speaker(
                id=r,
                speech_s=totals[k],
                turns=sum(1 for t in turns if t.speaker == r),
                similarity=float(np.average(best_sim[mine], weights=dur[mine])),
                centroid=cents[k],
            )
        )
    return SpeakerMap(speakers, segments, turns, settings)


def _turns(segments: list[Segment]) -> list[Turn]:
    out: list[Turn] = []
    run: list[Segment] = []

    def close() -> None:
        if run:
            speech = sum(s.duration for s in run)
            sim = sum(s.similarity * s.duration for s in run) / max(1e-9, speech)
            out.append(
                Turn(
                    run[0].start,
                    run[-1].end,
                    run[0].speaker,
                    speech,
                    sim,
                    run[0].cut_before,
                    run[-1].cut_after,
                )
            )
            run.clear()

    for seg in sorted(segments, key=lambda s: s.start):
        if seg.speaker is None or (run and run[0].speaker != seg.speaker):
            close()
        if seg.speaker is not None:
            run.append(seg)
    close()
    return out


# --------------------------------------------------------------------------------------------
# Choosing one


@dataclass(frozen=True)
class SpeakerChoice:
    """Which speaker voice-split keeps: rank N (None = auto: the most speech) or the closest to a sample."""

    rank: int | None = None
    match: Path | None = None

    @classmethod
    def parse(cls, speaker: str = "auto", match: Path | str | None = None) -> SpeakerChoice:
        text = (speaker or "auto").strip().lower()
        if text == "auto":
            rank = None
        elif text.isdigit() and int(text) >= 1:
            rank = int(text)
        else:
            raise UserError(f"--speaker must be 'auto' or a rank 1, 2, ... (got {speaker!r})")
        if match is not None and rank is not None:
            raise UserError("use --speaker N or --match FILE, not both")
        return cls(rank=rank, match=Path(match) if match is not None else None)

    def describe(self) -> str:
        if self.match is not None:
            return f"closest to {self.match.name}"
        return "most speech" if self.rank is None else f"rank {self.rank}"


@dataclass(frozen=True)
class ChosenSpeaker:
    speaker: Speaker
    reason: str  # "most speech", "rank 2", "closest to sample.wav (0.91)"
    match_similarity: dict[int, float] | None = None  # with --match: cosine to each speaker


def speaker_lines(smap: SpeakerMap) -> list[str]:
    """One line per speaker, for messages."""
    return [
        f"speaker {s.id}: {s.speech_s:.1f} s of speech in {s.turns} turn{'s' if s.turns != 1 else ''}"
        f" ({smap.usable_s(s.id):.1f} s clean)"
        for s in smap.speakers
    ]


def choose_speaker(
    smap: SpeakerMap, choice: SpeakerChoice, sample_embedding: np.ndarray | None = None
) -> ChosenSpeaker:
    """The speaker `choice` asks for; a UserError listing the speakers when there is no such one."""
    if not smap.speakers:
        raise UserError("no speaker found: the speech is too short or too unclear to tell voices apart")
    found = "; ".join(speaker_lines(smap))
    if choice.match is not None:
        if sample_embedding is None:
            raise UserError(f"no speech found in {choice.match.name} to match a speaker against")
        sims = {s.id: float(s.centroid @ sample_embedding) for s in smap.speakers}
        best = max(sims, key=sims.get)
        return ChosenSpeaker(smap.speaker(best), f"closest to {choice.match.name} ({sims[best]:.2f})", sims)
    if choice.rank is None:
        return ChosenSpeaker(smap.speakers[0], "most speech")
    if choice.rank > len(smap.speakers):
        raise UserError(
            f"--speaker {choice.rank}: only {len(smap.speakers)} speaker"
            f"{'s' if len(smap.speakers) != 1 else ''} found ({found})"
        )
    return ChosenSpeaker(smap.speaker(choice.rank), f"rank {choice.rank}")


@dataclass(frozen=True)
class SpeakerSelection:
    """The speakers found and the one chosen; what voice-split keeps and writes to clips.json."""

    map: SpeakerMap
    chosen: ChosenSpeaker

    @property
    def regions(self) -> list[Span] | None:
        """Where clips may come from; None with a single speaker (nothing to keep out)."""
        if len(self.map.speakers) < 2:
            return None
        return self.map.regions(self.chosen.speaker.id)

    def to_json(self) -> dict:
        sims = self.chosen.match_similarity or {}
        return {
            "chosen": self.chosen.speaker.id,
            "reason": self.chosen.reason,
            "found": [
                s.to_json()
                | {"clean_s": round(self.map.usable_s(s.id), 3)}
                | ({"match_similarity": round(sims[s.id], 4)} if s.id in sims else {})
                for s in self.map.speakers
            ],
            "unclear_s": round(self.map.unclear_s, 3),
            "encoder": ENCODER_NAME,
        }


def restrict_spans(spans: list[Span], regions: list[Span], min_s: float = 0.0) -> list[Span]:
    """The parts of `spans` that lie inside `regions`, longer than `min_s`."""
    out = []
    for s in spans:
        for r in regions:
            a, b = max(s.start, r.start), min(s.end, r.end)
            if b - a > min_s:
                out.append(Span(round(a, 4), round(b, 4)))
    return out


def within_one(span: Span, regions: list[Span], tolerance: float = 0.02) -> bool:
    """True when `span` lies inside a single region (so no other voice sits between its ends)."""
    return any(r.start - tolerance <= span.start and span.end <= r.end + tolerance for r in regions)
