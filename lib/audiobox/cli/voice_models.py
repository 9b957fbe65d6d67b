"""voice-models: which models each app needs, which are in the cache, and downloading them.

Downloads come from the Hugging Face hub, or from the mirror named by HF_ENDPOINT; HF_HUB_OFFLINE=1
forbids them. They go where the apps look: Qwen3-TTS and Demucs into the Hugging Face cache
($HF_HOME/hub, by default <cache>/huggingface/hub), Whisper into <cache>/asr.
"""

from __future__ import annotations

import argparse
import shlex

from audiobox.cli.common import (
    HelpFormatter,
    Parser,
    ProgressView,
    add_dirs,
    print_json,
    run_subcommand,
    stderr_console,
)
from audiobox.errors import run_main
from audiobox.paths import resolve_dirs

EPILOG = """examples:
  voice-models list                          # what each app needs, and what is cached
  voice-models download                      # every app's default models
  voice-models download --app voice-split    # only what voice-split needs
  voice-models download Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign large-v3
  HF_ENDPOINT=https://hf-mirror.example voice-models download
"""


def build_parser() -> argparse.ArgumentParser:
    from audiobox.catalog import APPS

    parser = Parser(prog="voice-models", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    ls = sub.add_parser(
        "list", help="the models each app needs, and which are cached", formatter_class=HelpFormatter
    )
    ls.add_argument("--app", choices=APPS, help="only the models this app uses")
    ls.add_argument("--json", action="store_true", help="print the listing as JSON on stdout")
    add_dirs(ls, out=False)

    dl = sub.add_parser(
        "download",
        help="download models into the cache (skips those already there)",
        formatter_class=HelpFormatter,
        description="Without names: the default models of every app (or of --app). Names are what "
        "the apps' model flags take: a Qwen3-TTS hub id, a faster-whisper size or hub id, a Demucs "
        "model name.",
    )
    dl.add_argument("names", nargs="*", metavar="NAME", help="models to download (see `voice-models list`)")
    dl.add_argument("--app", choices=APPS, help="the default models of this app")
    dl.add_argument("--all", action="store_true", help="every model in the list, the larger ones too")
    dl.add_argument("--json", action="store_true", help="print where each model is, as JSON on stdout")
    add_dirs(dl, out=False)
    return parser


def cmd_list(args) -> int:
    from audiobox import hub
    from audiobox.catalog import CATALOG, cached, location

    dirs = resolve_dirs(args.cache)
    state = hub.state()
    rows = []
    for model in CATALOG:
        if args.app and args.app not in model.apps:
            continue
        path = cached(model, dirs)
        rows.append(
            {
                "name": model.name,
                "family": model.family,
                "purpose": model.purpose,
                "apps": list(model.apps),
                "default": model.default,
                "cached": path is not None,
                "path": str(path) if path else None,
                "cache_dir": str(location(model, dirs)),
            }
        )
    if args.json:
        print_json({"hub": {"endpoint": state.endpoint, "mode": state.mode}, "models": rows})
        return 0
    width = max((len(row["name"]) for row in rows), default=0)
    for row in rows:
        flag = "cached " if row["cached"] else "missing" if row["default"] else "-      "
        print(f"{flag}  {row['name']:<{width}}  {row['purpose']}; used by {', '.join(row['apps']) or '-'}")
    print(f"hub: {state.describe()} ({state.mode})")
    print(f"caches: {hub.cache_dir()} (Qwen3-TTS, Demucs), {dirs.stage('asr')} (Whisper)")
    missing = [r["name"] for r in rows if r["default"] and not r["cached"]]
    if missing:
        cache = f" --cache {shlex.quote(args.cache)}" if args.cache else ""
        print(f"missing: {', '.join(missing)}; get them with `{hub.models_command()} download{cache}`")
    return 0


def cmd_download(args) -> int:
    from audiobox.catalog import download, select

    dirs = resolve_dirs(args.cache)
    models = select(args.names, args.app, args.all)
    console = stderr_console()
    done = []
    for model in models:
        console.print(f"{model.name} ({model.family}): {model.purpose}")
        with ProgressView(console) as progress:
            path = download(model, dirs, progress)
        console.print(f"  in the cache: {path}")
        done.append({"name": model.name, "family": model.family, "path": str(path)})
    if args.json:
        print_json({"models": done})
    else:
        console.print(f"{len(done)} model(s) ready")
    return 0


COMMANDS = {"list": cmd_list, "download": cmd_download}


def main(argv=None) -> int:
    return run_main(lambda args: run_subcommand(build_parser, COMMANDS, args), argv)


if __name__ == "__main__":
    raise SystemExit(main())
