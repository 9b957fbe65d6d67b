"""Fault injection, part 3: hostile or huge inputs (header bombs, oversized and live downloads).

Every case must be refused with one clear line before the expensive part starts (decoding,
downloading everything), and must leave nothing behind in the cache.
"""

from __future__ import annotations

import http.server
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiobox.audio import load_audio, resample
from audiobox.errors import UserError
from audiobox.sources import SourceLimits, TrimRange, download_source, source_limits
from loopback import file_server, serve_on_loopback


def wav_header_bomb(path: Path, rate: int = 1, channels: int = 1, data_bytes: int = 40_000) -> Path:
    """A small PCM WAV whose header declares `rate` Hz: 40 KB at 1 Hz is 5.5 hours of audio."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes)
    path.write_bytes(
        b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body + b"\x01\x00" * (data_bytes // 2)
    )
    return path


def test_one_hertz_wav_is_refused_from_its_header(tmp_path):
    bomb = wav_header_bomb(tmp_path / "bomb.wav")
    with pytest.raises(UserError, match="declares a sample rate of 1 Hz"):
        load_audio(bomb, 16000)


def test_voice_split_on_the_bomb_is_one_line_and_exit_2(tmp_path, capsys):
    from audiobox.cli.voice_split import main

    bomb = wav_header_bomb(tmp_path / "bomb.wav")
    code = main(
        ["--audio", str(bomb), "--no-separate", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "w")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2 and len(err) == 1 and "declares a sample rate of 1 Hz" in err[0]
    )  # no progress rows first


def test_voice_register_on_the_bomb_is_one_line_too(tmp_path, tiny_models, capsys):
    from audiobox.cli.voice_register import main

    bomb = wav_header_bomb(tmp_path / "bomb.wav")
    args = ["--audio", str(bomb), "--voice-name", "v", "--no-separate", "--x-vector-only", "--skip-synth"]
    args += [
        "--model",
        str(tiny_models / "base"),
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "w"),
    ]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "declares a sample rate of 1 Hz" in err[0]


def test_too_long_a_stretch_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 30, np.float32), 8000)
    with pytest.raises(UserError, match="over the limit"):
        load_audio(path, 16000, max_duration=10)
    assert load_audio(path, 16000, start=5, end=12, max_duration=10).duration == pytest.approx(7, abs=0.01)


@pytest.mark.parametrize("suffix", ["wav", "mp3"])
def test_block_reading_matches_a_whole_file_decode(tmp_path, suffix):
    rng = np.random.default_rng(0)
    t = np.arange(48000 * 45) / 48000
    left = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    stereo = np.stack([left, 0.5 * left + 0.01 * rng.standard_normal(t.size).astype(np.float32)], axis=1)
    path = tmp_path / f"long.{suffix}"
    sf.write(path, stereo, 48000)
    got = load_audio(path, 16000)
    assert got.sample_rate == 16000 and abs(got.samples.size - 16000 * 45) <= 1200
    if suffix == "wav":  # lossless: the streamed decode equals a one-shot downmix + resample
        whole = resample(stereo.mean(axis=1), 48000, 16000)
        n = min(whole.size, got.samples.size)
        assert np.max(np.abs(whole[1000 : n - 1000] - got.samples[1000 : n - 1000])) < 1e-3


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Loopback stand-ins for the sites the caps protect against."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/live.m3u8":  # an HLS playlist without ENDLIST: a live stream
            body = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nseg7.ts\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.apple.mpegurl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/endless.mp3":  # no length, never ends (an internet radio)
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.end_headers()
            try:
                for _ in range(20_000):
                    self.wfile.write(b"\xff\xfb\x90\x00" + b"\0" * 4092)
            except OSError:
                pass
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def hostile_server():
    with serve_on_loopback(_Hostile) as url:
        yield url


def cache_files(folder: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


def test_live_stream_is_refused(tmp_path, hostile_server):
    with pytest.raises(UserError, match="live stream"):
        download_source(f"{hostile_server}/live.m3u8", tmp_path / "dl")
    assert cache_files(tmp_path / "dl") == []


def test_endless_download_stops_at_the_size_cap(tmp_path, hostile_server):
    with pytest.raises(UserError, match="over the download limit of 1 MB"):
        download_source(
            f"{hostile_server}/endless.mp3", tmp_path / "dl", limits=SourceLimits(max_bytes=1_000_000)
        )
    assert cache_files(tmp_path / "dl") == []


def test_oversized_and_overlong_downloads_are_refused(tmp_path, loopback_media):
    url = f"{loopback_media}/podcast.wav"
    with pytest.raises(UserError, match="over the download limit"):
        download_source(url, tmp_path / "dl", limits=SourceLimits(max_bytes=100_000))
    with pytest.raises(UserError, match="over the limit of 0:01.0"):
        download_source(url, tmp_path / "dl", limits=SourceLimits(max_duration_s=1))
    assert cache_files(tmp_path / "dl") == []
    assert download_source(url, tmp_path / "dl").path.is_file()  # within the defaults it works


def test_cli_flags_set_the_caps(tmp_path, loopback_media, capsys):
    from audiobox.cli.voice_split import main

    assert source_limits(1.5, "1:00") == SourceLimits(max_bytes=1_500_000, max_duration_s=60.0)
    with pytest.raises(UserError, match="must be positive"):
        source_limits(0, "1:00")
    code = main(
        [
            "--url",
            f"{loopback_media}/podcast.wav",
            "--max-download-mb",
            "0.1",
            "--no-separate",
            "--cache",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "w"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "over the download limit of 0.1 MB" in err[-1]


def test_a_range_of_a_long_recording_is_all_that_is_downloaded(tmp_path, media_site):
    url, site = media_site
    long = site.folder / "long.wav"
    before = site.served["/long.wav"]
    media = download_source(f"{url}/long.wav", tmp_path / "dl", span=TrimRange(125.0, 130.0))
    sent = site.served["/long.wav"] - before
    # measured ~1.2 MB of 22 MB: yt-dlp's probe, ffmpeg's header read and seek, send buffers
    assert sent < long.stat().st_size / 8, (sent, long.stat().st_size)
    assert media.offset == 125.0 and media.duration == pytest.approx(130.0, abs=0.05)
    original, rate = sf.read(long, dtype="float32")
    want = original[125 * rate : 130 * rate]
    got = media.read(rate, 125.0, 130.0).samples
    assert abs(got.size - want.size) <= rate // 100
    n = min(got.size, want.size)
    assert np.max(np.abs(got[:n] - want[:n])) < 1e-3  # the same samples, not merely the same length
    again = download_source(f"{url}/long.wav", tmp_path / "dl", span=TrimRange(125.0, 130.0))
    assert again.cached and again.path == media.path
    whole = download_source(f"{url}/long.wav", tmp_path / "dl")
    assert whole.offset == 0.0 and not whole.cached
    later = download_source(f"{url}/long.wav", tmp_path / "dl", span=TrimRange(200.0, 210.0))
    assert later.cached and later.path == whole.path  # a whole recording serves every range


def test_a_range_still_obeys_the_size_cap(tmp_path, media_site):
    url, _site = media_site
    with pytest.raises(UserError, match="over the download limit of 1 MB"):
        download_source(
            f"{url}/long.wav",
            tmp_path / "dl",
            span=TrimRange(60.0, 120.0),  # 2.9 MB of PCM
            limits=SourceLimits(max_bytes=1_000_000),
        )
    assert cache_files(tmp_path / "dl") == []


def test_a_server_without_ranges_gets_a_whole_download_and_a_warning(tmp_path, media_site, caplog):
    plain = file_server(media_site[1].folder, accept_ranges=False)
    with serve_on_loopback(plain) as url:
        media = download_source(f"{url}/podcast.wav", tmp_path / "dl", span=TrimRange(10.0, 15.0))
    size = (media_site[1].folder / "podcast.wav").stat().st_size
    assert media.offset == 0.0 and media.path.stat().st_size == size
    assert "downloading the whole recording" in caplog.text
    assert [p for p in cache_files(tmp_path / "dl") if ".partial" in p] == []
