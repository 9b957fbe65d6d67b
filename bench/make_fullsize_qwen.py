"""Build full-size Qwen3-TTS checkpoints with random weights, for speed measurements only.

Speed does not depend on weight values once the frame count is fixed, so these dirs time the
real shapes (0.6B or 1.7B talker, 5-layer code predictor, full codec) without the real weights,
which this offline machine cannot download.  Sizes come from the published config.json values
collected in ../shared/notes/cpu-baseline.md §2 (file sizes cross-checked there).

The text tokenizer, control-token layout and generation defaults come from the project's tiny
builder (tests/fixtures/tiny_qwen.py); only the text *embedding* has the real 151936 rows, so
memory and load time are real while token counts differ (byte-level tokens).

    python bench/make_fullsize_qwen.py OUT --preset 0.6b [--kinds custom_voice,base]

Writes OUT/<kind>/ loadable by ``Qwen3TTSModel.from_pretrained``.  The talker is saved in bf16
(as published), the codec in float32.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

PRESETS = {
    "0.6b": dict(hidden=1024, intermediate=3072, size="0b6"),
    "1.7b": dict(hidden=2048, intermediate=6144, size="1b7"),
}


def talker_sizes(preset: str) -> dict:
    p = PRESETS[preset]
    return dict(
        hidden_size=p["hidden"],
        intermediate_size=p["intermediate"],
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        text_vocab_size=151936,
        text_hidden_size=2048,
        rope_theta=1000000.0,
        max_position_embeddings=32768,
        rope_scaling={"interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        position_id_per_seconds=13,
    )


CODE_PREDICTOR = dict(
    vocab_size=2048,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=5,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=65536,
    rope_theta=1000000.0,
    num_code_groups=16,
)

CODEC_DECODER = dict(
    codebook_size=2048,
    codebook_dim=512,
    hidden_size=512,
    latent_dim=1024,
    num_attention_heads=16,
    num_key_value_heads=16,
    head_dim=64,
    intermediate_size=1024,
    num_hidden_layers=8,
    num_quantizers=16,
    upsample_rates=[8, 5, 4, 3],
    upsampling_ratios=[2, 2],
    decoder_dim=1536,
    sliding_window=72,
)

CODEC_ENCODER = dict(
    hidden_size=512,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=8,
    head_dim=64,
    intermediate_size=2048,
    num_filters=64,
    upsampling_ratios=[8, 6, 5, 4],
    num_quantizers=32,
    codebook_size=2048,
    codebook_dim=256,
    vector_quantization_hidden_dimension=256,
    sliding_window=250,
)


def build(out_dir: Path, preset: str, kinds: list[str]) -> dict[str, Path]:
    import tiny_qwen
    import torch

    with contextlib.redirect_stdout(sys.stderr):
        from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
        from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
        from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2Config,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model

    built = tiny_qwen.build_tiny_qwen(out_dir, kinds=kinds, codebook_size=2048)
    hidden = PRESETS[preset]["hidden"]
    for kind, kind_dir in built.items():
        started = time.perf_counter()
        config_path = kind_dir / "config.json"
        config = json.loads(config_path.read_text())
        config["tts_model_size"] = PRESETS[preset]["size"]
        config["talker_config"].update(talker_sizes(preset))
        config["talker_config"]["code_predictor_config"].pop("layer_types", None)  # derived from layer count
        config["talker_config"]["code_predictor_config"].update(CODE_PREDICTOR)
        # Published speaker encoder: only enc_dim (= talker hidden) differs from package defaults.
        config["speaker_encoder_config"] = {"enc_dim": hidden, "sample_rate": 24000}
        torch.manual_seed(7)
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**config)).eval().to(torch.bfloat16)
        for old in kind_dir.glob("model*.safetensors"):
            old.unlink()
        model.save_pretrained(kind_dir, safe_serialization=True)
        saved = json.loads(config_path.read_text())
        saved.get("speaker_encoder_config", {}).pop("model_type", None)
        config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        (kind_dir / "generation_config.json").write_text(
            json.dumps(tiny_qwen.GENERATION_DEFAULTS, indent=2) + "\n"
        )
        params = sum(p.numel() for p in model.parameters())
        del model

        codec_dir = kind_dir / "speech_tokenizer"
        codec_cfg = json.loads((codec_dir / "config.json").read_text())
        codec_cfg["decoder_config"].update(CODEC_DECODER)
        codec_cfg["encoder_config"].update(CODEC_ENCODER)
        torch.manual_seed(8)
        generator = torch.Generator().manual_seed(8)
        codec_kwargs = {
            k: v
            for k, v in codec_cfg.items()
            if k not in ("architectures", "transformers_version", "model_type", "torch_dtype", "dtype")
        }
        codec = Qwen3TTSTokenizerV2Model(Qwen3TTSTokenizerV2Config(**codec_kwargs)).eval()
        tiny_qwen._randomize_codebooks(codec, generator)
        tiny_qwen._calibrate_codec_decoder(codec.decoder, 2048, generator)
        for old in codec_dir.glob("model*.safetensors"):
            old.unlink()
        codec.save_pretrained(codec_dir, safe_serialization=True)
        print(
            f"{kind}: {params / 1e6:.1f} M params (bf16), codec {sum(p.numel() for p in codec.parameters()) / 1e6:.1f} M; "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        del codec
    return built


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="0.6b")
    parser.add_argument(
        "--kinds", default="custom_voice", help="comma list of base,custom_voice,voice_design"
    )
    args = parser.parse_args(argv)
    built = build(args.out_dir, args.preset, [k for k in args.kinds.split(",") if k])
    for kind, path in built.items():
        print(f"{kind}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
