"""Where the audio comes from: a link (yt-dlp, http(s) only) or a local file (straight to ffmpeg).

Downloads are cached under `<cache>/downloads/<extractor>/<video id>.<ext>` with a sidecar
`.json`; a second `index/<sha256(url)>.json` maps the exact link to that entry, so a repeated run
with the same link needs no network at all. Files are moved into place only when complete.
Trimming is not done by re-encoding: the trim range is validated here and applied when decoding.
With --start/--end only that range is fetched where the site lets ffmpeg read one (yt-dlp's
download ranges, the stream copied as it is); elsewhere the whole recording is fetched, under the
same caps, and a warning says so.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from audiobox.errors import UserError
from audiobox.fsutil import TEMP_PREFIX, atomic_move, atomic_write_json, clean_stale, sha256_json, staging_dir
from audiobox.progress import ProgressFn, Reporter

log = logging.getLogger(__name__)

TRIM_TOLERANCE_S = 0.5  # an --end up to half a second past the end is accepted (rounded durations)


@dataclass(frozen=True)
class SourceLimits:
    """Caps on what a link may bring in, checked before and while downloading.

    The defaults fit a long podcast (5 h; 2 GB holds 5 h of audio even at lossless rates)."""

    max_bytes: int = 2_000_000_000
    max_duration_s: float = 5 * 3600.0

    def check_duration(self, duration: float | None, what: str) -> None:
        if duration is not None and duration > self.max_duration_s:
            raise UserError(
                f"{what} is {format_timestamp(duration)} long, over the limit of "
                f"{format_timestamp(self.max_duration_s)} (raise it with --max-duration)"
            )

    def check_bytes(self, size: int | None, what: str) -> None:
        if size is not None and size > self.max_bytes:
            raise UserError(
                f"{what} is over the download limit of {self.max_bytes / 1e6:g} MB "
                f"(raise it with --max-download-mb)"
            )


@dataclass
class SourceMedia:
    """A local media file ready for decoding, plus where it came from (kept in the voice record)."""

    path: Path
    kind: str  # "url" or "file"
    duration: float  # where the file ends, in seconds of the source (offset + its length)
    meta: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # True when a download was reused
    offset: float = 0.0  # where the file starts in the source: > 0 when only a range was downloaded

    @property
    def source_id(self) -> str:
        return str(self.meta.get("source_id") or self.path.stem)

    def read(self, sample_rate: int | None, start: float | None = None, end: float | None = None, **kwargs):
        """`audio.load_audio` of [start, end), given in seconds of the source (not of the file)."""
        from audiobox.audio import load_audio

        first = max(0.0, start - self.offset) if start is not None else None
        last = end - self.offset if end is not None else None
        return load_audio(self.path, sample_rate, start=first or None, end=last, **kwargs)


@dataclass(frozen=True)
class TrimRange:
    start: float = 0.0
    end: float | None = None  # None: to the end of the file

    def length(self, duration: float) -> float:
        return (self.end if self.end is not None else duration) - self.start


WHOLE = TrimRange()  # no trim: the whole recording


# ---------------------------------------------------------------- timestamps and trim

_TS_RE = re.compile(r"^\d+(\.\d+)?$")


def parse_timestamp(value: str | float | int | None) -> float | None:
    """`90`, `90.5`, `1:30`, `1:30.5`, `1:02:30.5` -> seconds. UserError on anything else."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            raise UserError(f"timestamp must not be negative: {value}")
        return float(value)
    text = str(value).strip()
    parts = text.split(":")
    if not text or len(parts) > 3 or not all(parts):
        raise UserError(f"bad timestamp {value!r}: use seconds (90), m:ss (1:30) or h:mm:ss (1:02:30.5)")
    *whole, last = parts
    if not _TS_RE.match(last) or not all(p.isdigit() for p in whole):
        raise UserError(f"bad timestamp {value!r}: use seconds (90), m:ss (1:30) or h:mm:ss (1:02:30.5)")
    seconds = float(last)
    if whole and seconds >= 60:
        raise UserError(f"bad timestamp {value!r}: seconds must be below 60 after a colon")
    if len(whole) == 2 and int(whole[1]) >= 60:
        raise UserError(f"bad timestamp {value!r}: minutes must be below 60 in h:mm:ss")
    total = 0.0
    for p in whole:
        total = total * 60 + int(p)
    return total * 60 + seconds if whole else seconds


def format_timestamp(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h >= 1 else f"{int(m)}:{s:04.1f}"


def validate_trim(start: float | None, end: float | None, duration: float) -> TrimRange:
    """Check a trim range against the file; UserError explains what is wrong in one line."""
    s = 0.0 if start is None else float(start)
    if s < 0:
        raise UserError(f"--start {s:g} is negative")
    if s >= duration:
        raise UserError(
            f"--start {format_timestamp(s)} is at or past the end of the file "
            f"(duration {format_timestamp(duration)})"
        )
    if end is not None:
        if end <= s:
            raise UserError(f"--end {format_timestamp(end)} must be after --start {format_timestamp(s)}")
        if end > duration + TRIM_TOLERANCE_S:
            raise UserError(
                f"--end {format_timestamp(end)} is past the end of the file "
                f"(duration {format_timestamp(duration)})"
            )
        end = min(float(end), duration)
    return TrimRange(s, end)


def source_limits(max_download_mb: float, max_duration: str | float) -> SourceLimits:
    """SourceLimits from the --max-download-mb / --max-duration flags."""
    seconds = parse_timestamp(max_duration)
    if not max_download_mb > 0 or not seconds:
        raise UserError("--max-download-mb and --max-duration must be positive")
    return SourceLimits(max_bytes=int(max_download_mb * 1e6), max_duration_s=float(seconds))


# ---------------------------------------------------------------- probing


def probe_media(path: Path) -> float:
    """Duration in seconds of the first audio stream; UserError when the file holds no audio,
    audio.BadHeader when its header declares an absurd sample rate or channel count."""
    from audiobox.audio import check_header, ffprobe_audio

    info, detail = ffprobe_audio(path, "stream=codec_type,sample_rate,channels,duration:format=duration")
    if info is None:
        raise UserError(f"{path.name} is not an audio or video file ffmpeg can read ({detail})")
    streams = info.get("streams") or []
    if not streams:
        raise UserError(f"{path.name} has no audio stream")
    try:
        rate, channels = float(streams[0]["sample_rate"]), int(streams[0]["channels"])
    except (KeyError, TypeError, ValueError):
        pass  # not declared: the decoder checks what it finds
    else:
        check_header(path, rate, channels, 0.0, float("inf"))
    for candidate in (streams[0].get("duration"), (info.get("format") or {}).get("duration")):
        try:
            if candidate not in (None, "N/A") and float(candidate) > 0:
                return float(candidate)
        except ValueError:
            pass
    # some containers (streamed webm) carry no duration: decode once to measure
    proc = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-vn",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise UserError(f"{path.name} has no decodable audio")
    return len(proc.stdout) / 2 / 16000.0


# ---------------------------------------------------------------- local files


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text or ""))


def local_source(path: str | Path) -> SourceMedia:
    raw = str(path)
    if raw.startswith("file://"):
        raw = unquote(urlparse(raw).path)
    p = Path(raw).expanduser()
    if not p.exists():
        raise UserError(f"audio file not found: {p}")
    if not p.is_file():
        raise UserError(f"not a file: {p}")
    if p.stat().st_size == 0:
        raise UserError(f"audio file is empty: {p}")
    duration = probe_media(p)
    return SourceMedia(
        path=p.resolve(),
        kind="file",
        duration=duration,
        meta={"type": "file", "path": str(p.resolve()), "source_id": _safe_name(p.stem)},
    )


# ---------------------------------------------------------------- downloads


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:120] or "media"


def _short_ytdlp_error(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg)
    msg = re.sub(r"^ERROR:\s*", "", msg)
    msg = re.sub(r"\s*\(caused by .*\)\s*$", "", msg)
    return msg.replace("Unsupported URL", "no audio or video found (unsupported URL)")


class _QuietLogger:
    """yt-dlp logger that keeps its chatter off the terminal; errors come back as exceptions."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def _ydl_options(cookies: Path | None) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "noplaylist": True,  # a watch?v=..&list=.. link means the one video
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
        "format": "bestaudio/best",  # keep the original audio stream: no lossy re-encode
        "socket_timeout": 20,
        "retries": 2,
        "cachedir": False,
    }
    if cookies is not None:
        cookie_path = Path(cookies).expanduser()
        if not cookie_path.is_file():
            raise UserError(f"cookies file not found: {cookie_path}")
        opts["cookiefile"] = str(cookie_path)
    return opts


def _download_entry(downloads: Path, extractor: str, video_id: str, span: TrimRange) -> tuple[Path, Path]:
    """The folder and sidecar of one download: `<id>.json` for the whole recording, a ranged one
    `<id>.<start ms>-<end ms>.json` beside it."""
    folder = downloads / _safe_name(extractor.lower())
    stem = _safe_name(video_id)
    if span != WHOLE:
        stem += f".{_range_key(span)}"
    return folder, folder / f"{stem}.json"


def _range_key(span: TrimRange) -> str:
    end = "end" if span.end is None else str(int(round(span.end * 1000)))
    return f"{int(round(span.start * 1000))}-{end}"


def _index_path(downloads: Path, url: str, span: TrimRange) -> Path:
    key = url if span == WHOLE else f"{url}#{_range_key(span)}"
    return downloads / "index" / f"{sha256_json(key)[:32]}.json"


def _cached_download(meta_path: Path) -> SourceMedia | None:
    try:
        meta = json.loads(meta_path.read_text())
        media = meta_path.parent / meta["file"]
        offset = float(meta.get("offset", 0.0))
        duration = float(meta["duration"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not media.is_file() or media.stat().st_size != meta.get("bytes"):
        return None
    return SourceMedia(
        path=media, kind="url", duration=offset + duration, meta=meta["source"], cached=True, offset=offset
    )


def _cached_via_index(downloads: Path, url: str, span: TrimRange) -> SourceMedia | None:
    try:
        ref = json.loads(_index_path(downloads, url, span).read_text())
        return _cached_download(downloads / ref["entry"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def download_source(
    url: str,
    downloads: Path,
    *,
    cookies: Path | None = None,
    progress: ProgressFn | None = None,
    refresh: bool = False,
    limits: SourceLimits = SourceLimits(),
    span: TrimRange = WHOLE,
) -> SourceMedia:
    """Download the audio of one video with yt-dlp (cached by extractor + video id).

    With a `span` (seconds of the source) only that range is fetched where the site allows it; the
    file then starts at `span.start` (SourceMedia.offset). A cached whole recording serves any range.
    Live streams are refused, and so is a recording longer or larger than `limits`: before the
    download when the site says so, otherwise as soon as the bytes pass the cap. `progress` gets a
    "download" stage in bytes (only when bytes are fetched: not for a cached or refused link)."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise UserError(
            f"unsupported link {url!r}: only http(s) links are downloaded (use --audio for files)"
        )
    downloads = Path(downloads)
    if not refresh:
        for key in dict.fromkeys((WHOLE, span)):
            hit = _cached_via_index(downloads, url, key)
            if hit is not None:
                return hit

    try:
        import yt_dlp
        from yt_dlp.utils import DownloadError, ExtractorError
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise UserError("yt-dlp is not installed (pip install yt-dlp)") from exc

    opts = _ydl_options(cookies)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=False, process=False)
    except (DownloadError, ExtractorError) as exc:
        raise UserError(f"cannot open {url}: {_short_ytdlp_error(exc)}") from None
    if info is None:
        raise UserError(f"cannot open {url}: nothing found at this link")
    if info.get("_type") in ("playlist", "multi_video") or info.get("entries") is not None:
        raise UserError(f"{url} is a playlist; pass the link of a single video")
    if info.get("_type") == "url" and info.get("url") and info.get("url") != url:
        # a redirect to another extractor (e.g. an embed): resolve it, still refusing playlists
        return download_source(
            info["url"],
            downloads,
            cookies=cookies,
            progress=progress,
            refresh=refresh,
            limits=limits,
            span=span,
        )
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        raise UserError(f"{url} is a live stream; only finished recordings can be downloaded")
    if span != WHOLE and info.get("duration"):
        span = validate_trim(span.start, span.end, float(info["duration"]))  # before any byte comes

    extractor = str(info.get("extractor_key") or info.get("extractor") or "generic")
    video_id = str(info.get("id") or sha256_json(url)[:16])
    if extractor.lower() == "generic":  # ids of plain files are just their names: not unique across sites
        video_id = f"{video_id}-{sha256_json(url)[:10]}"
    if not refresh:
        for key in dict.fromkeys((WHOLE, span)):
            meta_path = _download_entry(downloads, extractor, video_id, key)[1]
            hit = _cached_download(meta_path)
            if hit is not None:
                entry = str(meta_path.relative_to(downloads))
                atomic_write_json(_index_path(downloads, url, span), {"url": url, "entry": entry})
                return hit

    fetch = _Fetch(url, downloads, extractor, video_id, opts, limits, Reporter(progress), info)
    if span != WHOLE:
        limits.check_duration(span.length(float(info.get("duration") or span.end or 0.0)), url)
        try:
            return fetch.run(span)
        except _RangeRefused as why:
            log.warning(
                "%s: cannot download just %s-%s (%s); downloading the whole recording "
                "(up to %g MB, --max-download-mb)",
                url,
                format_timestamp(span.start),
                "end" if span.end is None else format_timestamp(span.end),
                why,
                limits.max_bytes / 1e6,
            )
    limits.check_duration(info.get("duration"), url)
    limits.check_bytes(info.get("filesize") or info.get("filesize_approx"), url)
    return fetch.run(WHOLE)


class _RangeRefused(Exception):
    """A ranged download failed in a way a whole download may not (the site cannot serve ranges)."""


@dataclass
class _Fetch:
    """One yt-dlp download into a held staging folder, moved into the cache when complete."""

    url: str
    downloads: Path
    extractor: str
    video_id: str
    opts: dict[str, Any]
    limits: SourceLimits
    progress: Reporter
    info: dict[str, Any]

    def run(self, span: TrimRange) -> SourceMedia:
        import yt_dlp
        from yt_dlp.utils import DownloadError, ExtractorError, download_range_func

        from audiobox.audio import BadHeader

        url, limits = self.url, self.limits
        folder, meta_path = _download_entry(self.downloads, self.extractor, self.video_id, span)
        clean_stale(folder, (TEMP_PREFIX,))  # what a killed download left behind
        part = (
            ""
            if span == WHOLE
            else f" ({format_timestamp(span.start)}-{'end' if span.end is None else format_timestamp(span.end)})"
        )
        self.progress.start("download", unit="bytes", message=url + part)
        with staging_dir(folder, prefix=TEMP_PREFIX) as staging:

            def hook(status: dict) -> None:
                # raising here stops yt-dlp at once; the staging folder goes with the exception
                limits.check_bytes(status.get("total_bytes"), url)
                limits.check_bytes(status.get("downloaded_bytes"), url)
                if status.get("status") in ("downloading", "finished"):
                    total = status.get("total_bytes") or status.get("total_bytes_estimate")
                    self.progress.update("download", int(status.get("downloaded_bytes") or 0), total)

            dl_opts = dict(
                self.opts,
                outtmpl={"default": str(staging / "media.%(ext)s")},
                progress_hooks=[hook],
                paths={"home": str(staging), "temp": str(staging)},
            )
            if span != WHOLE:
                # ffmpeg reads the range (seeking by HTTP range where the server allows) and copies
                # the stream; -fs stops it just past the byte cap, which the size check below refuses
                end = float("inf") if span.end is None else span.end
                dl_opts["download_ranges"] = download_range_func(None, [(span.start, end)])
                dl_opts["external_downloader_args"] = {"ffmpeg_o": ["-fs", str(limits.max_bytes)]}
            t0 = time.monotonic()
            try:
                with yt_dlp.YoutubeDL(dl_opts) as ydl:
                    full = ydl.extract_info(url, download=True) or {}
            except (DownloadError, ExtractorError) as exc:
                if span != WHOLE:
                    raise _RangeRefused(_short_ytdlp_error(exc)) from None
                raise UserError(f"cannot download {url}: {_short_ytdlp_error(exc)}") from None
            files = [p for p in staging.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl"))]
            if not files:
                if span != WHOLE:
                    raise _RangeRefused("yt-dlp produced no file")
                raise UserError(f"cannot download {url}: yt-dlp produced no file")
            got = max(files, key=lambda p: p.stat().st_size)
            limits.check_bytes(got.stat().st_size, url)
            try:
                duration = probe_media(got)
            except BadHeader as exc:
                raise UserError(f"{url}: {exc}") from None
            except UserError:
                if span != WHOLE:
                    raise _RangeRefused("the range holds no audio ffmpeg can read") from None
                raise UserError(
                    f"{url} is not audio or video (the server sent something ffmpeg cannot read)"
                ) from None
            limits.check_duration(duration, url)
            final = folder / f"{meta_path.stem}.{got.suffix.lstrip('.') or 'bin'}"
            atomic_move(got, final)
            source = {
                "type": "url",
                "url": url,
                "extractor": self.extractor,
                "video_id": self.video_id,
                "title": full.get("title") or self.info.get("title"),
                "uploader": full.get("uploader"),
                "webpage_url": full.get("webpage_url") or url,
                "source_id": _safe_name(f"{self.extractor.lower()}-{self.video_id}"),
            }
            if span != WHOLE:
                source["downloaded_range"] = [span.start, span.end]
            meta = {
                "file": final.name,
                "bytes": final.stat().st_size,
                "duration": duration,
                "offset": span.start,
                "source": source,
                "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "download_s": round(time.monotonic() - t0, 2),
            }
            atomic_write_json(meta_path, meta)
            entry = str(meta_path.relative_to(self.downloads))
            atomic_write_json(_index_path(self.downloads, url, span), {"url": url, "entry": entry})
            self.progress.end("download", f"{meta['bytes'] / 1e6:.1f} MB")
            return SourceMedia(
                path=final, kind="url", duration=span.start + duration, meta=source, offset=span.start
            )


def resolve_source(
    *,
    url: str | None = None,
    audio: str | Path | None = None,
    downloads: Path | None = None,
    cookies: Path | None = None,
    progress: ProgressFn | None = None,
    limits: SourceLimits = SourceLimits(),
    span: TrimRange = WHOLE,
) -> SourceMedia:
    """One of --url / --audio. file:// links and existing paths given as --url go to ffmpeg directly.
    A download fetches only `span` where the site allows (local files are read as they are)."""
    if bool(url) == bool(audio):
        raise UserError("give exactly one source: --url LINK or --audio FILE")
    if audio:
        return local_source(audio)
    assert url is not None
    url = url.strip()
    if url.startswith("file://") or (not is_url(url) and Path(url).expanduser().exists()):
        return local_source(url)
    if not is_url(url):
        raise UserError(f"not a link and not an existing file: {url!r}")
    if downloads is None:
        raise UserError("internal: no downloads cache dir given")
    return download_source(url, downloads, cookies=cookies, progress=progress, limits=limits, span=span)
