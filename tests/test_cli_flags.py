"""One CLI: the same flag has the same name and meaning in every app (parsers only: no model, fast)."""

from __future__ import annotations

import argparse
import importlib

import pytest

APPS = ("voice_synth", "voice_clone", "voice_split", "voice_register", "voice_models")


def parsers():
    """(label, parser) for every app and sub-command."""

    def walk(parser, label):
        yield label, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{label} {name}")

    for app in APPS:
        yield from walk(importlib.import_module(f"audiobox.cli.{app}").build_parser(), app.replace("_", "-"))


def visible_options():
    """{option string: [(parser label, action)]} over every app, hidden ones left out."""
    found: dict[str, list] = {}
    for label, parser in parsers():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                found.setdefault(option, []).append((label, action))
    return found


def parse(app: str, *argv: str) -> argparse.Namespace:
    return importlib.import_module(f"audiobox.cli.{app}").build_parser().parse_args(list(argv))


@pytest.mark.parametrize("flag", ["--tts-threads", "--separator-threads", "--cache", "--debug", "--json"])
def test_shared_flags_are_defined_once(flag):
    """Same flag, same destination and the same help in every app that has it."""
    uses = visible_options()[flag]
    assert len({(action.dest, action.help if flag != "--json" else "") for _, action in uses}) == 1, [
        (label, action.help) for label, action in uses
    ]


def test_threads_flags_say_what_they_are_for():
    options = visible_options()
    assert "--threads" not in options
    assert {label for label, _ in options["--tts-threads"]} >= {"voice-synth speak", "voice-synth batch"}
    assert "Qwen3-TTS" in options["--tts-threads"][0][1].help
    assert "Demucs" in options["--separator-threads"][0][1].help


def test_the_old_threads_flag_names_the_new_ones(capsys):
    from audiobox.cli.voice_synth import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["speak", "--speaker", "ryan", "--text", "x", "--threads", "2"])
    assert exited.value.code == 2
    assert (
        "--threads is now --tts-threads (Qwen3-TTS) or --separator-threads (Demucs)"
        in capsys.readouterr().err
    )


def test_time_values_take_seconds_or_minutes():
    speak = parse("voice_synth", "speak", "--speaker", "ryan", "--text", "x", "--pause", "0:00.5")
    assert speak.pause == 0.5
    for app in ("voice_split", "voice_register"):
        args = parse(app, "--audio", "a.wav", "--voice-name", "v", "--start", "1:30", "--end", "125.5",
                     "--length", "0:08", "--max-pause", "0.5", "--window-len", "1:00",
                     "--max-scan-seconds", "10:00")  # fmt: skip
        assert (args.start, args.end, args.length, args.max_pause) == (90.0, 125.5, 8.0, 0.5)
        assert (args.window_len, args.max_scan_seconds) == (60.0, 600.0)


def test_a_bad_time_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        parse("voice_split", "--audio", "a.wav", "--length", "0:00")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "'0:00' must be greater than 0" in err and len(err.splitlines()) == 1
