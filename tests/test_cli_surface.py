"""What a newcomer meets on the command line: stdin text, one named output file, "did you mean",
case-insensitive voice names, the style list, help on every option, the seed and path after a run."""

from __future__ import annotations

import argparse
import importlib
import io
import json

import pytest
import soundfile as sf
from audiobox.cli.voice_synth import main as synth

APPS = ("voice_synth", "voice_clone", "voice_split", "voice_register", "voice_models", "voice_serve")


@pytest.fixture()
def where(tmp_path):
    return ["--cache", str(tmp_path / "cache")], tmp_path / "work"


def speak_args(tiny_models, where, *args):
    cache, work = where
    return ["speak", *args, "--model", str(tiny_models / "custom_voice"), "--max-new-tokens", "8",
            *cache, "--out", str(work)]  # fmt: skip


def test_text_from_stdin_into_one_named_file_with_seed_and_path_printed(
    tiny_models, where, monkeypatch, capsys
):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Hello from a pipe.\n")))
    named = where[1] / "named" / "hello.flac"
    args = speak_args(tiny_models, where, "--speaker", "ryan", "--text-file", "-", "-o", str(named))
    assert synth([*args, "--seed", "11"]) == 0
    err = capsys.readouterr().err
    assert "seed: 11" in err and f"output: {named}" in err
    (run_dir,) = (where[1] / "speaker-ryan").iterdir()
    assert (run_dir / "text.txt").read_text().strip() == "Hello from a pipe."
    assert named.read_bytes() == (run_dir / "take_01.flac").read_bytes()  # the run folder keeps its take
    assert sf.info(str(named)).format == "FLAC"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "out.txt"], "name the file with one of the extensions .wav, .flac, .mp3, .ogg"),
        (["-o", "out.wav", "--format", "mp3"], "is a .wav file but --format is mp3"),
        (["-o", "out.wav", "--variants", "2"], "-o writes one file: with --variants add --select-best"),
    ],
)
def test_named_output_mistakes_stop_before_any_model_loads(where, capsys, extra, message):
    cache, work = where
    args = ["speak", "--speaker", "ryan", "--text", "x", "--model", "/nonexistent/model", *cache]
    assert synth([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "loading" not in err and "/nonexistent" not in err


def test_names_get_a_suggestion_and_voice_names_ignore_case(tiny_models, where, capsys):
    cache, _ = where
    model = ["--model", str(tiny_models / "custom_voice")]
    tone = ["--tone", "excited", "--tone-instruct", "Very excited!"]
    assert (
        synth(["register-builtin", "--voice-name", "narrator", "--speaker", "Ryan", *tone, *model, *cache])
        == 0
    )
    capsys.readouterr()
    for args, suggestion in [
        (["--voice", "narrator", "--tone", "exited"], "no tone 'exited' (did you mean 'excited'?)"),
        (["--voice", "narator"], "no voice named 'narator' (did you mean 'narrator'?)"),
        (["--speaker", "rian"], "unknown speaker 'rian' (did you mean 'ryan'?)"),
        (
            ["--speaker", "ryan", "--language", "englsh"],
            "unknown language 'englsh' (did you mean 'english'?)",
        ),
        (["--speaker", "ryan", "--instruct-style", "whisperr"], "(did you mean 'whisper'?)"),
    ]:
        assert synth(speak_args(tiny_models, where, "--text", "Hi.", *args)) == 2, args
        assert suggestion in capsys.readouterr().err
    assert synth([*speak_args(tiny_models, where, "--voice", "Narrator", "--text", "Hi."), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["voice"] == "narrator"


def test_list_styles_shows_every_preset(capsys):
    from audiobox.styles import load_styles

    assert synth(["list-styles", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["styles"] == load_styles()
    assert synth(["list-styles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(load_styles()) and any(line.split()[0] == "whisper" for line in lines)


def options_without_help(parser: argparse.ArgumentParser, prefix: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options_without_help(sub, f"{prefix} {name}")
        elif not action.help and not isinstance(action, argparse._HelpAction):
            yield f"{prefix} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_of_every_app_has_help_text():
    missing = []
    for app in APPS:
        missing += options_without_help(importlib.import_module(f"audiobox.cli.{app}").build_parser(), app)
    assert missing == []


def test_split_says_why_it_found_fewer_clips_and_mp3_decoding_stays_quiet(speech_mix, tmp_path, capfd):
    """Asking for more clips than the speech holds: a warning with the reason (stderr and clips.json);
    libmpg123's complaints about the mp3 never reach the terminal (fd-level capture)."""
    from audiobox.cli.voice_split import main as split

    out = tmp_path / "out"
    args = ["--audio", str(speech_mix.mp3), "--clips", "30", "--length", "6", "--no-separate"]
    assert split([*args, "--start", "0:03", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    err = capfd.readouterr().err
    assert "libmpg123" not in err and "part2_3_length" not in err
    (warning,) = [
        w for w in json.loads((out / "podcast" / "clips.json").read_text())["warnings"] if "asked" in w
    ]
    assert warning.startswith("found ") and "of the 30 clips asked for: there are " in warning
    assert "try a shorter --length" in warning and warning in " ".join(err.split())
    assert "(of the 30 asked)" in err
