"""The import layering the project promises: cli/ on top, nothing above it, no app importing another,
and the few pieces of knowledge that must live in one place staying there."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "audiobox"
CLI = PACKAGE / "cli"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _library_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if CLI not in p.parents)


def _app_modules() -> set[str]:
    """cli modules that are an app (they have a main); the others (common, batch...) are shared helpers."""
    apps = set()
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            apps.add(f"audiobox.cli.{path.stem}")
    return apps


def test_no_library_module_knows_the_cli():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imports(path) if name == "argparse" or name.startswith("audiobox.cli")
        )
        for path in _library_modules()
    }
    assert not {k: v for k, v in offenders.items() if v}, "library modules importing argparse or audiobox.cli"


def test_no_cli_app_imports_another():
    apps = _app_modules()
    assert {"audiobox.cli.voice_clone", "audiobox.cli.voice_split", "audiobox.cli.voice_register"} <= apps
    offenders = {}
    for path in CLI.glob("*.py"):
        me = f"audiobox.cli.{path.stem}"
        hits = sorted(
            name
            for name in _imports(path)
            if name != me and any(name == a or name.startswith(a + ".") for a in apps)
        )
        if hits:
            offenders[path.name] = hits
    assert not offenders, f"cli modules importing another app: {offenders}"


def _files_using(needle: str) -> list[str]:
    return sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if needle in p.read_text(encoding="utf-8")
    )


def test_one_place_for_word_error_rates_and_speaking_pace():
    # WER/CER (and the text normalisation behind it) is computed in takes/text.py only
    assert _files_using("import jiwer") == ["takes/text.py"]
    # "how long should this text take to say": languages.expected_seconds, used by everyone else
    assert _files_using(".chars_per_second") == ["languages.py"]


def test_apps_call_workflows_not_their_steps():
    """A voice's steps (the reference, the Whisper model, the prompt, the record and the registry
    transaction) are taken inside the library (audiobox.clone, .register, .design, .builtin_voice,
    .split); an app only calls those."""
    steps = ("prepare_reference(", "load_asr(", "build_clone_prompt(", ".synthesizer(")
    records = ("clone_record(", "builtin_record(", "ref_record(", 'record["')  # voice.json is voices.py's
    for step in (*steps, *records):
        assert not [f for f in _files_using(step) if f.startswith("cli/")], step


def test_one_voice_exists_message_and_no_replace_flag():
    """'voice ... already exists' is built by voices.already_exists only (it advises --force); the HTTP
    API has no flags, so voice-serve's 409 says what an API client can do. No app has --replace."""
    assert _files_using("already exists (use --force to replace") == []  # not hand-written anywhere
    assert _files_using("already exists{detail}") == ["voices.py"]
    assert _files_using("voice {name!r} already exists") == ["serve/service.py"]
    assert _files_using('"--replace"') == ["cli/voice_clone.py"]  # only its renamed_flag pointer to --force


def test_no_library_function_takes_parsed_arguments():
    """Options cross into the library as dataclasses: no parameter typed Namespace, or an untyped `args`."""
    offenders = []
    for path in _library_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                for param in params:
                    annotation = ast.unparse(param.annotation) if param.annotation else ""
                    if "Namespace" in annotation or (param.arg == "args" and not annotation):
                        offenders.append(
                            f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}({param.arg})"
                        )
    assert not offenders, offenders


# the library's own ways to reach the terminal, each with its reason; everything else reports
# progress through audiobox.progress and warnings through logging
TERMINAL_WRITERS = {
    "errors.py",  # run_main: the apps' one error line, and the handler that shows library warnings
}


def _terminal_use(path: Path) -> list[str]:
    """print() calls and sys.stdout/sys.stderr references in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"print() at line {node.lineno}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ("stdout", "stderr")
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            found.append(f"sys.{node.attr} at line {node.lineno}")
    return found


def test_library_shows_nothing_itself():
    """No rich or tqdm below cli/ (bars, tables and spinners are the apps' business), no prints."""
    drawing = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imports(path) if name.split(".")[0] in ("rich", "tqdm")
        )
        for path in _library_modules()
    }
    assert not {k: v for k, v in drawing.items() if v}, "library modules importing rich/tqdm"
    printing = {
        rel: hits
        for path in _library_modules()
        if (rel := str(path.relative_to(PACKAGE))) not in TERMINAL_WRITERS and (hits := _terminal_use(path))
    }
    assert not printing, (
        f"library modules writing to the terminal (use audiobox.progress / logging): {printing}"
    )


def test_one_progress_protocol():
    """Progress crosses from the library to the apps as audiobox.progress events only: the former
    channels (a Progress class, byte-count and frame callbacks, status strings) are gone."""
    for needle in (
        "on_progress",
        "on_frame",
        "RichProgress",
        "ProgressCallback",
        "ProgressHook",
        "Status = ",
    ):
        assert _files_using(needle) == [], needle
