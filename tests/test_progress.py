"""The one progress protocol: library events (audiobox.progress) and how the apps show them
(cli.common.ProgressView): rich bars on a terminal, plain throttled lines in logs and CI."""

from __future__ import annotations

import io
import json
import logging
import re

from audiobox.cli.common import ProgressView
from audiobox.progress import ProgressEvent, Reporter, relabel
from rich.console import Console

LINE = re.compile(r"^\[ *\d+\.\d s\] ")


def test_reporter_fills_in_each_stage_and_drops_events_without_a_sink():
    events: list[ProgressEvent] = []
    report = Reporter(events.append)
    report.start("vad", 30.0, "s", "interview.wav")
    report.update("vad", 12.0)
    report.shifted("vad", 20.0, 30.0)(ProgressEvent("vad", done=5.0, total=10.0, unit="s"))
    report.note("reference", "measuring 4 candidate spans")
    report.end("vad", "18 s speech")
    with report.step("load", "tiny-model"):
        pass
    relabel(events.append, message="chunk 1/2")(ProgressEvent("synthesize", done=3, total=8, unit="frames"))
    assert events == [
        ProgressEvent("vad", "start", total=30.0, unit="s", message="interview.wav"),
        ProgressEvent("vad", "update", done=12.0, total=30.0, unit="s"),
        ProgressEvent("vad", "update", done=25.0, total=30.0, unit="s"),
        ProgressEvent("reference", "update", message="measuring 4 candidate spans"),
        ProgressEvent("vad", "end", total=30.0, unit="s", message="18 s speech"),
        ProgressEvent("load", "start", message="tiny-model"),
        ProgressEvent("load", "end"),
        ProgressEvent("synthesize", "update", done=3, total=8, unit="frames", message="chunk 1/2"),
    ]
    quiet = Reporter(None)  # the library's default: nothing happens, nothing fails
    quiet.start("vad", 1.0, "s")
    quiet.update("vad", 0.5)
    quiet.end("vad")
    assert relabel(None, message="x") is None


def test_plain_lines_without_a_terminal_are_throttled_per_stage():
    now = [100.0]
    out = io.StringIO()
    view = ProgressView(Console(file=out, force_terminal=False), every_s=5.0, clock=lambda: now[0])
    view(ProgressEvent("vad", "start", total=60.0, unit="s", message="talk.wav"))
    view(ProgressEvent("download", "start", unit="bytes"))
    for step in range(1, 25):  # an update every 0.5 s for 12 s, in two stages
        now[0] = 100.0 + step * 0.5
        view(ProgressEvent("vad", done=step * 2.5, total=60.0, unit="s"))
        view(ProgressEvent("download", done=step * 1e6, unit="bytes"))
    view(ProgressEvent("reference", message="measuring 3 candidate spans"))
    view(ProgressEvent("vad", "end", message="41 s speech"))
    lines = out.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    vad = [line for line in lines if "speech map (VAD): " in line]
    assert vad[0].endswith("speech map (VAD): started (60 s): talk.wav")
    assert vad[-1].endswith("speech map (VAD): done in 12.0 s (41 s speech)")
    # 12 s of updates, at most one line per 5 s: at 5 s and 10 s
    assert [line.split("] ")[1] for line in vad[1:-1]] == [
        "speech map (VAD):  42% (25 s of 60 s)",
        "speech map (VAD):  83% (50 s of 60 s)",
    ]
    assert [line.split("] ")[1] for line in lines if "download" in line] == [
        "download: started",
        "download: 10.0 MB",  # its own clock: not silenced by the other stage's lines
        "download: 20.0 MB",
    ]
    assert lines[-2].endswith("reference: measuring 3 candidate spans")  # notes are never dropped


def test_nothing_is_written_before_the_first_event():
    out = io.StringIO()
    with ProgressView(Console(file=out, force_terminal=True)):
        pass
    with ProgressView(Console(file=out, force_terminal=False)):
        pass
    assert out.getvalue() == ""


def test_a_terminal_gets_bars_and_library_warnings_stay_one_clean_line():
    from audiobox.errors import show_library_warnings

    show_library_warnings()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with ProgressView(console) as view:
        view(ProgressEvent("vad", "start", total=60.0, unit="s"))
        view(ProgressEvent("vad", done=30.0, total=60.0, unit="s"))
        logging.getLogger("audiobox.split").warning("the vocals of 0:10-0:20 lost the speech")
        view(ProgressEvent("reference", message="measuring [3] candidate spans"))  # not rich markup
        view(ProgressEvent("vad", "end", message="cached"))
        view(ProgressEvent("synthesize", "start", total=8, unit="frames", message="chunk 1/2"))
        view(ProgressEvent("synthesize", done=8, total=8, unit="frames", message="chunk 1/2"))
    text = out.getvalue()
    assert "\x1b[" in text  # drawn as a live display, not as log lines
    assert "speech map (VAD)" in text and "cached" in text and "synthesize" in text and "chunk 1/2" in text
    assert "100% (8 frames of 8 frames)" in text
    assert "reference: measuring [3] candidate spans" in text
    assert "warning: the vocals of 0:10-0:20 lost the speech\n" in text


def test_speak_without_a_terminal_shows_progress_lines_and_keeps_stdout_json(
    tiny_models, tmp_path, capsys, monkeypatch
):
    """The first tiny run in a log or CI: model load and frames as plain lines, never only 'loading…'."""
    from audiobox.cli.voice_synth import main

    monkeypatch.setenv("AUDIOBOX_PROGRESS_SECONDS", "0")
    for name in ("HF_HOME", "TORCH_HOME"):  # --cache sets them when unset: keep them to this test
        monkeypatch.setenv(name, str(tmp_path / "c" / name.lower()))
    code = main(
        [
            "speak",
            "--speaker",
            "ryan",
            "--text",
            "First sentence here. " * 12,
            "--chunk",
            "--model",
            str(tiny_models / "custom_voice"),
            "--max-new-tokens",
            "6",
            "--json",
            "--cache",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "w"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)  # stdout holds the JSON and nothing else
    chunks = len(json.loads(open(summary["meta"]).read())["takes"][0]["chunks"])
    lines = captured.err.splitlines()
    assert chunks > 1 and lines and all(LINE.match(line) for line in lines), captured.err
    assert any("load model: started: " in line and "custom_voice" in line for line in lines)
    assert any("load model: done in" in line for line in lines)
    for n in range(1, chunks + 1):
        pattern = rf"synthesize: +\d+% \(\d frames of 6 frames\) chunk {n}/{chunks}$"
        assert any(re.search(pattern, line) for line in lines), (pattern, lines)
    assert sum("synthesize: done in" in line for line in lines) == chunks


def test_a_bad_progress_interval_is_one_clear_error(monkeypatch):
    import pytest
    from audiobox.errors import UserError

    monkeypatch.setenv("AUDIOBOX_PROGRESS_SECONDS", "often")
    with pytest.raises(UserError, match="AUDIOBOX_PROGRESS_SECONDS='often' is not a number of seconds"):
        ProgressView(Console(file=io.StringIO()))
