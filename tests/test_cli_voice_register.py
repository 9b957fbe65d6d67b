"""voice-register end to end on tiny real models (Demucs, Whisper, Qwen3-TTS Base), in-process."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiobox.cli.voice_register import main as _main
from audiobox.voices import VoiceRegistry


def main(argv) -> int:
    try:
        return _main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code)


def _common(tmp_path, tiny_models):
    return [
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(tiny_models / "base"),
        "--demucs-repo",
        str(tiny_models / "demucs"),
        "--separator-threads",
        "1",
        "--windows",
        "1",
        "--window-len",
        "12",
        "--clips",
        "2",
        "--length",
        "8",
    ]


def _voices(tmp_path) -> list[str]:
    root = tmp_path / "cache" / "voices"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def test_register_from_a_link_and_speak(loopback_media, tiny_models, tmp_path, capsys):
    rc = main(
        [
            "--url",
            f"{loopback_media}/podcast.mp3",
            "--voice-name",
            "joe",
            "--asr-model",
            str(tiny_models / "whisper"),
            "--force-bad-ref",
            "--text",
            "Hello there, this is a test.",
            "--seed",
            "3",
            "--max-new-tokens",
            "9",
            "--json",
            *_common(tmp_path, tiny_models),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["voice"] == "joe" and summary["ready"] and summary["prompt_id"]
    assert set(summary["stage_seconds"]) == {"split", "reference", "prompt", "register", "speak"}
    assert "stage times" not in captured.err  # --json: the summary is on stdout
    take = Path(summary["takes"][0])
    assert take.is_file() and sf.info(take).samplerate == 24000
    meta = json.loads((take.parent / "takes.meta.json").read_text())
    assert meta["generation"]["max_new_tokens"] == 9 and meta["seed"] == 3  # generation flags reach speak
    assert summary["seed"] == 3 and summary["meta"] == str(take.parent / "takes.meta.json")
    assert meta["app"] == "voice-register"  # the one speak path records which app made the run
    assert summary["next"].startswith("voice-synth speak --voice joe")
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("joe")
    assert voice.ready and voice.ref["transcript_source"] == "whisper" and voice.ref_wav.is_file()
    assert sf.info(voice.ref_wav).samplerate == 24000 and voice.data["source"]["type"] == "url"
    assert 1 <= len(summary["clips"]) <= 2 and all(Path(c).is_file() for c in summary["clips"])
    assert summary["split"]["stats"]["separated_s"] <= 12.6


def test_skip_synth_still_builds_the_prompt(speech_mix, tiny_models, tmp_path, capsys):
    """Also: --ref-start/--ref-end (m:ss) make the reference exactly that span of the source."""
    start = speech_mix.blocks[1][0] + 0.5
    ref_start = f"{int(start // 60)}:{start % 60:04.1f}"
    rc = main(
        [
            "--audio",
            str(speech_mix.path),
            "--voice-name",
            "quiet",
            "--skip-synth",
            "--x-vector-only",
            "--no-separate",
            "--ref-start",
            ref_start,
            "--ref-end",
            f"{start + 6:.1f}",
            *_common(tmp_path, tiny_models),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("quiet")
    assert voice.ready and voice.ref["x_vector_only"]
    segment = voice.ref["segment"]
    assert abs(segment["start"] - start) < 0.3 and abs(segment["end"] - (start + 6)) < 0.3, segment
    # one source.wav rule: what the span was cut from (the whole source, as voice-clone stores it for the
    # same flags), so the recorded segment indexes into it; not the split's reference clip
    source, rate = sf.read(voice.source_wav)
    assert rate == 24000 and abs(len(source) / rate - sf.info(speech_mix.path).duration) < 0.05
    from audiobox.cli.voice_clone import main as clone_main

    clone_argv = ["prepare-ref", "--ref-audio", str(speech_mix.path), "--ref-start", ref_start,
                  "--ref-end", f"{start + 6:.1f}", "--x-vector-only", "--voice-name", "quiet-clone",
                  "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert clone_main(clone_argv) == 0
    cloned = VoiceRegistry(tmp_path / "cache" / "voices").get("quiet-clone")
    assert np.array_equal(sf.read(cloned.source_wav)[0], source)
    assert np.array_equal(sf.read(cloned.ref_wav)[0], sf.read(voice.ref_wav)[0])
    assert cloned.ref["segment"] == segment
    assert "stage times: split" in err and "speak" not in err.split("stage times:")[1].split("\n")[0]
    # the printed next step works as printed (with our out dir added)
    next_line = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("voice-synth speak")][0]
    from audiobox.cli.voice_synth import main as synth_main

    argv = shlex.split(next_line)[1:] + ["--out-exact", str(tmp_path / "spoken")]
    assert synth_main(argv) == 0
    assert list((tmp_path / "spoken").glob("take_01.*"))


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--voice-name", "Not OK"], "invalid voice name"),
        (["--voice-name", "ok", "--language", "klingon"], "unknown language"),
        (["--voice-name", "ok", "--start", "9:00", "--x-vector-only"], "past the end"),
        (["--voice-name", "ok", "--ref-text", "  "], "empty"),
        (["--voice-name", "ok", "--asr-model", "/nonexistent/whisper"], "whisper"),
        (["--voice-name", "ok", "--dtype", "int4"], "invalid choice"),
        (["--voice-name", "ok", "--tts-threads", "0"], "--tts-threads"),
    ],
)
def test_bad_input_fails_before_work(speech_mix, tiny_models, tmp_path, capsys, extra, match):
    rc = main(["--audio", str(speech_mix.path), "--no-separate", *_common(tmp_path, tiny_models), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err
    assert _voices(tmp_path) == []
    assert not (tmp_path / "cache" / "split").exists()  # nothing heavy ran


@pytest.mark.parametrize("source,match", [("music_only.wav", "no speech"), ("list.html", "playlist")])
def test_bad_sources_register_nothing(loopback_media, tiny_models, tmp_path, capsys, source, match):
    rc = main(
        [
            "--url",
            f"{loopback_media}/{source}",
            "--voice-name",
            "bad",
            "--x-vector-only",
            "--no-separate",
            *_common(tmp_path, tiny_models),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and match in err
    assert _voices(tmp_path) == []


def test_rejected_reference_registers_nothing(speech_mix, tiny_models, tmp_path, capsys):
    """The tiny whisper hears gibberish: the reference gate refuses, and no voice is left behind."""
    rc = main(
        [
            "--audio",
            str(speech_mix.path),
            "--voice-name",
            "gate",
            "--no-separate",
            "--asr-model",
            str(tiny_models / "whisper"),
            *_common(tmp_path, tiny_models),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "rejected" in err
    assert _voices(tmp_path) == []


def test_register_from_a_range_of_a_long_link(media_site, tiny_models, tmp_path, capsys):
    """Only --start/--end of the link is downloaded; --ref-start/--ref-end stay in source seconds."""
    url, site = media_site
    args = ["--url", f"{url}/long.wav", "--start", "2:00", "--end", "2:30", "--no-separate"]
    args += ["--x-vector-only", "--skip-synth", "--voice-name", "ranged", *_common(tmp_path, tiny_models)]
    rc = main([*args, "--ref-start", "1:00", "--ref-end", "1:06"])  # outside what would be downloaded
    err = capsys.readouterr().err
    assert rc == 2 and "is before --start" in err and not (tmp_path / "cache" / "downloads").exists()

    before = site.served["/long.wav"]
    rc = main([*args, "--ref-start", "2:05", "--ref-end", "2:11"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert site.served["/long.wav"] - before < (site.folder / "long.wav").stat().st_size / 5
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("ranged")
    assert voice.ready and voice.data["source"]["downloaded_range"] == [120.0, 150.0]
    segment = voice.ref["segment"]  # seconds of the downloaded file, which starts at 2:00
    assert abs(segment["start"] - 5.0) < 0.3 and abs(segment["end"] - 11.0) < 0.3, segment
    original, rate = sf.read(site.folder / "long.wav", dtype="float32")
    ref, ref_rate = sf.read(voice.ref_wav, dtype="float32")
    assert ref_rate == rate
    want = original[int((120 + segment["start"]) * rate) :][: ref.size]
    assert np.corrcoef(ref[: want.size], want)[0, 1] > 0.95  # the same words as 2:05 of the source


def test_interactive_pick_becomes_the_voice(speech_mix, tiny_models, tmp_path, capsys, monkeypatch):
    """--interactive: the app asks (on stderr) mid-run, the library registers the clip picked."""
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("2\n"))
    args = ["--audio", str(speech_mix.path), "--no-separate", "--x-vector-only", "--skip-synth"]
    rc = main(
        [
            *args,
            "--voice-name",
            "picked",
            "--interactive",
            "--json",
            *_common(tmp_path, tiny_models),
            "--length",
            "6",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "reference clip [0-" in captured.err
    summary = json.loads(captured.out)
    saved = json.loads((Path(summary["clips_dir"]) / "clips.json").read_text())
    second = saved["clips"][1]
    assert saved["reference"]["chosen_by"] == "user" and saved["reference"]["start"] == second["start"]
    voice = VoiceRegistry(tmp_path / "cache" / "voices").get("picked")
    assert voice.data["source"]["clip"] == [second["start"], second["end"]]
