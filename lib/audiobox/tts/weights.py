"""CPU weight layouts for the Qwen3-TTS decode loops: oneDNN-packed bf16 and opt-in dynamic int8.

Why: on a CPU every talker step and code-predictor sub-step is a chain of one-row matrix products,
so speed is the rate at which weights stream from memory.  ``F.linear`` on a bf16 weight hands it to
oneDNN, which reorders the weight into its blocked layout on every call; packing once at load time
removes that copy and measured 1.4–1.7× faster per product on the build machine
(docs/benchmarks.md).  The kernel and the accumulation are the ones ``F.linear`` uses, so the
output is bit-identical; :func:`pack_bf16` checks that on this CPU before it packs anything.

Both functions replace modules in place, so upstream's own ``generate`` and our fast path run the
same modules.  The codec, embeddings and speaker encoder stay as loaded.
"""

from __future__ import annotations

__all__ = ["bf16_packing_is_exact", "pack_bf16", "quantize_int8"]


def bf16_packing_is_exact() -> bool:
    """True when oneDNN's packed bf16 product equals ``F.linear`` bit for bit on this CPU."""
    import torch
    import torch.nn.functional as F

    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 80, generator=generator).bfloat16()
    bias = torch.randn(96, generator=generator).bfloat16()
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        for rows in (1, 3, 37):
            x = torch.randn(2, rows, 80, generator=generator).bfloat16()
            out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
            if not torch.equal(out, F.linear(x, weight, bias)):
                return False
    except RuntimeError:
        return False
    return True


def _packed_linear_class():
    import torch

    class PackedLinear(torch.nn.Module):
        """A bf16 Linear whose weight lives in oneDNN's blocked layout (inference only)."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1)
            self.bias = (
                None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
            )

        def forward(self, x):
            return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

        def weight_nbytes(self) -> int:
            return self.in_features * self.out_features * 2

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    return PackedLinear


def _dynamic_int8_linear_class():
    import torch

    class DynamicInt8Linear(torch.nn.Module):
        """A Linear run the way ``torch.ao``'s dynamic int8 Linear runs it, built in one pass.

        Same weight observer, rounding and fbgemm kernel, so the same output as ``quantize_dynamic``;
        but the weight is upcast one layer at a time and packed once (``quantize_dynamic`` upcasts
        the whole talker first and packs a zero weight of every shape before the real one), which
        cut int8 loading of the 0.6B talker from 11 s to 2.5 s on the build machine.
        """

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().float()
            observer = torch.ao.quantization.default_dynamic_qconfig.weight()
            observer(weight)
            scale, zero_point = observer.calculate_qparams()
            qweight = torch.quantize_per_tensor(weight, float(scale), int(zero_point), torch.qint8)
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.packed_params = torch.ops.quantized.linear_prepack(qweight, bias)

        def forward(self, x):
            return torch.ops.quantized.linear_dynamic(x, self.packed_params, reduce_range=True)

        def weight_nbytes(self) -> int:
            return self.in_features * self.out_features

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    return DynamicInt8Linear


def _talker_linears(qwen_model) -> list:
    """(parent, attribute, Linear) for every plain Linear of the talker, code predictor included:
    the layers that run once per decoded token."""
    import torch

    talker = qwen_model.model.talker
    found = []
    for name, module in talker.named_modules():
        if type(module) is torch.nn.Linear:
            parent_name, _, attribute = name.rpartition(".")
            found.append((talker.get_submodule(parent_name) if parent_name else talker, attribute, module))
    return found


def pack_bf16(qwen_model) -> int:
    """Pack the talker's and code predictor's bf16 Linear weights for oneDNN, in place (CPU only).

    Returns how many layers were packed: 0 when the model is not bf16 on CPU or when packing would
    not be bit-identical here (then nothing changes).
    """
    import torch

    linears = _talker_linears(qwen_model)
    if not linears or any(
        m.weight.dtype != torch.bfloat16 or m.weight.device.type != "cpu" for _, _, m in linears
    ):
        return 0
    if not bf16_packing_is_exact():
        return 0
    packed_linear = _packed_linear_class()
    for parent, attribute, module in linears:
        setattr(parent, attribute, packed_linear(module))
    return len(linears)


def quantize_int8(qwen_model) -> None:
    """Opt-in dynamic int8 for the talker and code predictor Linear layers, in place (CPU only).

    Why: both decode loops read every weight once per token, so 1-byte weights cut the bytes per
    frame by 4 against float32.  The rest of the talker runs in float32 (the int8 kernel takes
    float32 activations).  Output quality with real weights must be checked by ear; see
    docs/benchmarks.md for measured speed.
    """
    import warnings

    int8_linear = _dynamic_int8_linear_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (torchao succeeds it)
        for parent, attribute, module in _talker_linears(qwen_model):
            setattr(parent, attribute, int8_linear(module))
    qwen_model.model.talker.float()
