"""One CLI: the same flag has the same name and meaning in every app (parsers only: no model, fast)."""

from __future__ import annotations

import argparse
import importlib

import pytest

APPS = ("voice_synth", "voice_clone", "voice_split", "voice_register", "voice_models", "voice_serve")


def walk(parser, label):
    """(label, parser) for a parser and its sub-commands."""
    yield label, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{label} {name}")


def parsers():
    """(label, parser) for every app and sub-command."""
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


@pytest.mark.parametrize(
    "flag",
    [
        "--tts-threads",
        "--separator-threads",
        "--asr-device",
        "--cache",
        "--debug",
        "--json",
        "--display-name",
    ],
)
def test_shared_flags_are_defined_once(flag):
    """Same flag, same destination and the same help in every app that has it."""
    uses = visible_options()[flag]
    assert len({(action.dest, action.help if flag != "--json" else "") for _, action in uses}) == 1, [
        (label, action.help) for label, action in uses
    ]


def test_replacing_a_voice_is_force_and_ignoring_caches_is_refresh():
    options = visible_options()
    assert "--replace" not in options
    for label, action in options["--force"]:
        assert "replace" in action.help or "overwrite" in action.help, (label, action.help)
        assert "cache" not in action.help, (label, action.help)
    registering = {
        label: action.help
        for label, action in options["--force"]
        if "--voice-name" in action.container._option_string_actions
    }
    assert len(registering) == 6 and set(registering.values()) == {
        "replace an existing voice of that name"
    }, registering
    refresh = {label: action.help for label, action in options["--refresh"]}
    assert {"voice-split", "voice-clone synth", "voice-clone prepare-ref"} <= set(refresh)
    assert all("cache" in text for text in refresh.values())


def test_asr_flags_have_one_name():
    options = visible_options()
    assert "--whisper-model" not in options and "--whisper-device" not in options
    for flag in ("--asr-model", "--asr-device"):
        apps = {label for label, _ in options[flag]}
        assert {
            "voice-clone synth",
            "voice-clone prepare-ref",
            "voice-clone self-test",
            "voice-register",
        } <= apps


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
    clone = parse(
        "voice_clone", "prepare-ref", "--ref-audio", "a.wav", "--ref-start", "0:26.6", "--ref-end", "31"
    )
    assert (clone.ref_start, clone.ref_end) == (26.6, 31.0)
    for app in ("voice_split", "voice_register"):
        args = parse(app, "--audio", "a.wav", "--voice-name", "v", "--start", "1:30", "--end", "125.5",
                     "--length", "0:08", "--max-pause", "0.5", "--window-len", "1:00",
                     "--max-scan-seconds", "10:00")  # fmt: skip
        assert (args.start, args.end, args.length, args.max_pause) == (90.0, 125.5, 8.0, 0.5)
        assert (args.window_len, args.max_scan_seconds) == (60.0, 600.0)
    register = parse("voice_register", "--audio", "a.wav", "--voice-name", "v", "--ref-start", "1:02.5")
    assert register.ref_start == 62.5


def test_every_time_flag_goes_through_the_one_time_parser():
    """A flag that takes a time (metavar SEC or TS, or "in seconds" in its help) is parsed by time_value or
    positive_time (audiobox.sources.parse_timestamp): seconds or m:ss everywhere, one error message."""
    from audiobox.cli import vast
    from audiobox.cli.timeflags import positive_time, time_value

    times = {}
    for label, parser in [*parsers(), *walk(vast._parser(), "vast")]:
        for action in parser._actions:
            if action.metavar in ("SEC", "TS") or "in seconds" in (action.help or ""):
                times[f"{label} {action.option_strings[-1]}"] = action.type
    assert {"voice-synth batch --pause", "voice-synth speak --pause", "voice-split --max-duration"} <= set(
        times
    )
    assert {f"vast {cmd} {flag}" for cmd in ("run", "shell") for flag in VAST_TIMES} <= set(times)
    wrong = {flag: kind for flag, kind in times.items() if kind not in (time_value, positive_time)}
    assert not wrong, wrong
    batch = parse("voice_synth", "batch", "script.txt", "--pause", "0:01.5")
    split = parse("voice_split", "--audio", "a.wav", "--max-duration", "1:30:00")
    assert batch.pause == 1.5 and split.max_duration == 5400.0


VAST_TIMES = ("--wait-running", "--wait-ssh", "--poll", "--max-duration")


def test_vast_waits_and_limits_take_time_values_from_flags_and_environment(monkeypatch):
    """scripts/vast.sh run: --max-duration 1:30:00, --wait-running 20:00..., and the VAST_* defaults alike."""
    from audiobox.cli import vast
    from audiobox.cloud.errors import EXIT_USAGE, DeployError

    args = vast._parser().parse_args(
        [
            "run",
            "--wait-running",
            "20:00",
            "--wait-ssh",
            "6:00",
            "--poll",
            "0:02.5",
            "--max-duration",
            "1:30:00",
        ]
    )
    assert (args.wait_running, args.wait_ssh, args.poll, args.max_duration) == (1200.0, 360.0, 2.5, 5400.0)
    for name in ("VAST_WAIT_RUNNING", "VAST_WAIT_SSH", "VAST_POLL", "VAST_MAX_DURATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAST_MAX_DURATION", "2:00:00")
    monkeypatch.setenv("VAST_POLL", "0:03")
    args = vast._parser().parse_args(["shell"])
    assert (args.max_duration, args.poll, args.wait_running) == (7200.0, 3.0, 1200.0)
    monkeypatch.setenv("VAST_WAIT_SSH", "6 minutes")
    with pytest.raises(DeployError, match="VAST_WAIT_SSH: bad timestamp") as refused:
        vast._parser()
    assert refused.value.exit_code == EXIT_USAGE
    monkeypatch.setenv("VAST_WAIT_SSH", "0")
    with pytest.raises(DeployError, match="must be greater than 0"):
        vast._parser()


def test_vast_refuses_a_bad_time_flag_by_name(capsys):
    from audiobox.cli import vast

    with pytest.raises(SystemExit) as exited:
        vast.main(["run", "--max-duration", "0:00"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "argument --max-duration: '0:00' must be greater than 0" in err


def test_a_bad_time_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        parse("voice_split", "--audio", "a.wav", "--length", "0:00")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "'0:00' must be greater than 0" in err and len(err.splitlines()) == 1
