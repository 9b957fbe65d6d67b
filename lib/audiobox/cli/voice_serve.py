"""voice-serve: an OpenAI-compatible speech server with a voices API and a web page.

Binds 127.0.0.1 unless told otherwise. On any other address an API key is required: put
VOICE_SERVE_API_KEY=<at least 16 random characters> in the environment or in .env (never on the
command line); clients send it as 'Authorization: Bearer <key>'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiobox.cli.common import HelpFormatter, Parser, add_dirs, add_threads, positive_int
from audiobox.errors import UserError, run_main
from audiobox.tts.models import DEFAULT_MODELS
from audiobox.tts.runtime import ATTENTIONS, DTYPES

EPILOG = """examples:
  voice-serve                                   # http://127.0.0.1:8000, web page at /
  curl -s localhost:8000/v1/audio/speech -H 'Content-Type: application/json' \\
       -d '{"model": "qwen3-tts", "input": "Hello!", "voice": "ryan", "response_format": "wav"}' -o hello.wav
  VOICE_SERVE_API_KEY=... voice-serve --host 0.0.0.0 --port 8000
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="voice-serve", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (not loopback: API key required)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        default=".env",
        help="where to look for VOICE_SERVE_API_KEY if not in the environment",
    )
    models = parser.add_argument_group("models (loaded on first use)")
    models.add_argument(
        "--base-model", default=DEFAULT_MODELS["base"], metavar="ID_OR_DIR", help="for cloned voices"
    )
    models.add_argument(
        "--custom-voice-model",
        default=DEFAULT_MODELS["custom_voice"],
        metavar="ID_OR_DIR",
        help="for built-in speakers",
    )
    models.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    models.add_argument("--dtype", default="auto", choices=DTYPES, help="as in voice-synth")
    models.add_argument("--attention", default="sdpa", choices=ATTENTIONS, help="streaming needs sdpa")
    add_threads(models, "tts")
    stream = parser.add_argument_group("streaming (latency against CPU: every chunk is one codec call)")
    stream.add_argument(
        "--first-chunk-frames",
        type=positive_int,
        metavar="N",
        help="frames (80 ms each) before the first audio is sent (default: 1)",
    )
    stream.add_argument(
        "--chunk-frames", type=positive_int, metavar="N", help="frames in each later chunk (default: 12)"
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-batch", type=positive_int, default=8, help="requests generated together")
    limits.add_argument("--max-input-chars", type=positive_int, default=4096, help="longest input text")
    limits.add_argument(
        "--max-upload-mb", type=positive_int, default=32, help="largest upload (clip or bundle)"
    )
    limits.add_argument("--max-variants", type=positive_int, default=4, help="largest select_best")
    parser.add_argument(
        "--judge-asr",
        default="auto",
        choices=("auto", "whisper", "sphinx", "none"),
        help="ASR that select_best uses to check takes",
    )
    parser.add_argument(
        "--asr-model",
        default="small",
        help="faster-whisper model for uploaded clips sent without a transcript",
    )
    add_dirs(parser, out=False)
    return parser


def main(argv=None) -> int:
    return run_main(_main, argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from audiobox.paths import resolve_dirs
    from audiobox.serve.config import Limits, ServeConfig, check_binding, read_api_key
    from audiobox.tts.models import read_model_info
    from audiobox.tts.runtime import RuntimeOptions

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    api_key = read_api_key(env_file=Path(args.env_file))
    check_binding(args.host, api_key)
    for ref in (args.base_model, args.custom_voice_model):
        read_model_info(ref)  # a wrong model dir fails now, not on the first request
    if max(args.first_chunk_frames or 1, args.chunk_frames or 1) > 300:
        raise UserError("--first-chunk-frames and --chunk-frames must be at most 300")
    config = ServeConfig(
        dirs=resolve_dirs(args.cache),
        host=args.host,
        port=args.port,
        api_key=api_key,
        models={"base": args.base_model, "custom_voice": args.custom_voice_model},
        runtime=RuntimeOptions(
            device=args.device, dtype=args.dtype, attention=args.attention, threads=args.tts_threads
        ),
        limits=Limits(
            max_input_chars=args.max_input_chars,
            max_upload_bytes=args.max_upload_mb << 20,
            max_variants=args.max_variants,
        ),
        max_batch=args.max_batch,
        first_chunk_frames=args.first_chunk_frames,
        chunk_frames=args.chunk_frames,
        judge_asr=args.judge_asr,
        asr_model=args.asr_model,
    )
    from audiobox.serve.app import serve

    serve(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
