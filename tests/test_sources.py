"""audiobox.sources: timestamps, trim checks, local files and the real yt-dlp path over loopback HTTP."""

from __future__ import annotations

import pytest
from audiobox.errors import UserError
from audiobox.sources import local_source, parse_timestamp, resolve_source, validate_trim


@pytest.mark.parametrize(
    "text,expected",
    [
        ("90", 90.0),
        ("90.5", 90.5),
        ("1:30", 90.0),
        ("1:30.5", 90.5),
        ("1:02:30.5", 3750.5),
        ("0:00:05", 5.0),
        (None, None),
        (12, 12.0),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "-5", "1:75", "1:75:00", "1::2", "1:3e2", ":30"])
def test_parse_timestamp_rejects(text):
    with pytest.raises(UserError):
        parse_timestamp(text)


def test_validate_trim():
    assert validate_trim(None, None, 60.0).start == 0.0
    assert validate_trim(10, 60.3, 60.0).end == 60.0  # rounding slack
    for start, end in [(70, None), (10, 5), (10, 10), (0, 75), (-1, None)]:
        with pytest.raises(UserError):
            validate_trim(start, end, 60.0)


def test_local_files(speech_mix, tmp_path):
    src = local_source(speech_mix.mp3)
    assert src.kind == "file" and abs(src.duration - speech_mix.duration) < 0.2
    assert resolve_source(url=f"file://{speech_mix.path}").path == speech_mix.path.resolve()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello, not audio\n" * 50)
    for bad in [tmp_path / "missing.wav", tmp_path / "empty.wav", tmp_path / "notes.txt", tmp_path]:
        with pytest.raises(UserError):
            local_source(bad)
    with pytest.raises(UserError):
        resolve_source()
    with pytest.raises(UserError, match="only http"):
        resolve_source(url="ftp://example.org/a.mp3", downloads=tmp_path)


@pytest.fixture(scope="module")
def loopback(loopback_media):
    return loopback_media


def test_download_is_cached_by_video_id(loopback, tmp_path, speech_mix):
    seen = []
    first = resolve_source(url=f"{loopback}/podcast.mp3", downloads=tmp_path, progress=seen.append)
    assert first.kind == "url" and not first.cached and first.path.is_file()
    assert first.meta["extractor"].lower() == "generic" and first.meta["url"].endswith("podcast.mp3")
    assert abs(first.duration - speech_mix.duration) < 0.2 and seen
    assert {(e.stage, e.unit) for e in seen} == {("download", "bytes")}
    assert (seen[0].phase, seen[-1].phase) == ("start", "end") and seen[-2].done == seen[-2].total > 0
    assert first.path.parent.parent == tmp_path and first.path.read_bytes() == speech_mix.mp3.read_bytes()
    again = resolve_source(url=f"{loopback}/podcast.mp3", downloads=tmp_path)
    assert again.cached and again.path == first.path
    other = resolve_source(url=f"{loopback}/podcast.wav", downloads=tmp_path)
    assert other.path != first.path  # same stem, different file: different entry
    assert not list(tmp_path.rglob(".partial-*"))


@pytest.mark.parametrize(
    "name,match",
    [
        ("missing.mp3", "404"),
        ("notes.txt", "not audio or video"),
        ("page.html", "no audio or video"),
        ("list.html", "playlist"),
    ],
)
def test_download_errors(loopback, tmp_path, name, match):
    with pytest.raises(UserError, match=match):
        resolve_source(url=f"{loopback}/{name}", downloads=tmp_path)
    # nothing half-written is left behind
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_unreachable_host(tmp_path):
    with pytest.raises(UserError, match="cannot open"):
        resolve_source(url="http://127.0.0.1:9/nothing.mp3", downloads=tmp_path)
