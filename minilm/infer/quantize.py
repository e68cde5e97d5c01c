"""Int8 weights: a quarter of the memory, for a small error in every weight.

Generating a token reads every weight of the model once, for very little arithmetic on each; on a CPU (and on a
GPU at batch 1) the speed is set by how many bytes of weights cross the memory bus. Storing each weight in one
byte instead of four (float32) or two (bfloat16) cuts that traffic, at the price of rounding.

Symmetric per-row quantization, as gpt-fast and torchao do for int8 weight-only: each output row w of a weight
matrix gets its own scale s = max|w| / 127, and each weight becomes the integer round(w / s), in -127..127. The
largest weight of the row lands exactly on +-127, so no code is wasted; rounding moves each weight by at most s/2.
Zero is exactly representable, and a row of zeros gets s = 1 (any scale would do; 1 avoids dividing by zero).
At inference the int8 matrix is multiplied directly and the scales applied to the output:
y_j = s_j * sum_i x_i q_ji, one multiplication per output instead of one per weight.

Only the weights are quantized, not the activations: the matmul itself still runs in floating point, so nothing
changes in the rest of the model, and the error stays small (activations have outliers that 8 bits handle badly).
Rounding moves each weight by an amount spread evenly over -s/2..s/2, independently from weight to weight, and the
logits move about as much as they would under such random noise (a test checks it).

Memory is saved wherever the weights are int8; time only where a kernel reads int8 directly. PyTorch's
(`torch._weight_int8pack_mm`) has a vectorised CPU path for bfloat16 activations (on x86 with AVX2 or AVX-512) and
a plain loop for float32 ones, slower than the float32 matmul it replaces; so a quantized model for a CPU computes
in bfloat16: `quantize_model(model, torch.bfloat16)`.

Int4 halves the bytes again but 15 levels are too coarse for a whole row: one scale per group of 32 weights along
the input keeps the error in check. On a CPU there is no fast int4 kernel here, so `quantize_int4` only measures
what the rounding would cost.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from minilm.model.gpt import GPT

INT8_MAX = 127  # symmetric: -127..127 (-128 left unused, so that q and -q are both representable)
INT4_MAX = 7  # symmetric: -7..7


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weights -> (q: int8 (out, in), scale: float32 (out,)), with weight ~ q * scale[:, None]."""
    if weight.dim() != 2 or not weight.dtype.is_floating_point:
        raise ValueError(f"quantize_int8 takes a float matrix (out, in); got {tuple(weight.shape)} {weight.dtype}")
    w = weight.detach().float()
    absmax = w.abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / INT8_MAX, torch.ones_like(absmax))  # a zero row: any scale, take 1
    q = torch.round(w / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weights (out, in) that int8 `q` and per-row `scale` stand for."""
    return q.float() * scale.float()[:, None]


def quantize_int4(weight: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weights -> (q: values -7..7 (out, in), stored one per int8 byte, not packed two to a byte;
    scale: float32 (out, in / group_size)), one symmetric scale per group of `group_size` inputs of a row."""
    if weight.dim() != 2 or not weight.dtype.is_floating_point:
        raise ValueError(f"quantize_int4 takes a float matrix (out, in); got {tuple(weight.shape)} {weight.dtype}")
    out_features, in_features = weight.shape
    if group_size < 1 or in_features % group_size:
        raise ValueError(
            f"in_features={in_features} does not split into groups of {group_size}; "
            f"pick a group_size that divides it (32 is usual)"
        )
    groups = weight.detach().float().reshape(out_features, in_features // group_size, group_size)
    absmax = groups.abs().amax(dim=2)
    scale = torch.where(absmax > 0, absmax / INT4_MAX, torch.ones_like(absmax))
    q = torch.round(groups / scale[..., None]).clamp(-INT4_MAX, INT4_MAX).to(torch.int8)
    return q.reshape(out_features, in_features), scale


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weights (out, in) that int4 `q` and its group scales (out, in / group) stand for."""
    out_features, in_features = q.shape
    groups = q.float().reshape(out_features, scale.size(1), in_features // scale.size(1))
    return (groups * scale.float()[..., None]).reshape(out_features, in_features)


# --- the layer ---------------------------------------------------------------------------------------------------

_KERNEL_WORKS: dict[tuple, bool] = {}  # (device type, dtype, out, in) -> does torch._weight_int8pack_mm work there


def int8_kernel_works(device: torch.device, dtype: torch.dtype, out_features: int, in_features: int) -> bool:
    """Whether PyTorch's int8 weight-only matmul (`torch._weight_int8pack_mm`, the kernel gpt-fast and torchao
    call) runs for this device, input dtype and shape, and agrees with the plain computation. It is a private
    function whose support varies by version, device and shape, so it is tried once per case on a small input."""
    key = (torch.device(device).type, dtype, out_features, in_features)
    if key not in _KERNEL_WORKS:
        _KERNEL_WORKS[key] = _try_kernel(torch.device(device), dtype, out_features, in_features)
    return _KERNEL_WORKS[key]


def _try_kernel(device: torch.device, dtype: torch.dtype, out_features: int, in_features: int) -> bool:
    if not hasattr(torch, "_weight_int8pack_mm"):
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_features, generator=generator).to(device, dtype)
    q = torch.randint(-INT8_MAX, INT8_MAX + 1, (out_features, in_features), generator=generator, dtype=torch.int8)
    scale = torch.rand(out_features, generator=generator) / 100
    try:
        y = torch._weight_int8pack_mm(x, q.to(device), scale.to(device, dtype))
    except (RuntimeError, NotImplementedError):
        return False
    expected = F.linear(x.float(), dequantize_int8(q, scale).to(device))
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    return bool(torch.allclose(y.float(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max())))


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights and a float scale per output row; the bias stays in float.

    `q` and `scale` are buffers, not parameters: nothing here is trained. The forward pass uses
    `torch._weight_int8pack_mm` where it works (see `int8_kernel_works`), which reads the int8 weights as they are;
    otherwise (or with `use_kernel = False`) it dequantizes the weights and calls F.linear: the same numbers, but the
    float copy is rebuilt at every call, so only the memory is saved, not the time.
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        if q.dtype != torch.int8 or q.dim() != 2 or scale.shape != (q.size(0),):
            raise ValueError(
                f"Int8Linear needs q int8 (out, in) and scale (out,); got q {tuple(q.shape)} {q.dtype}, "
                f"scale {tuple(scale.shape)}: make them with quantize_int8(weight)"
            )
        self.out_features, self.in_features = q.shape
        self.register_buffer("q", q)
        self.register_buffer("scale", scale.float())
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.use_kernel = True

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        q, scale = quantize_int8(linear.weight)
        return cls(q, scale, linear.bias)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weights these int8 values stand for (a new tensor at every call)."""
        return dequantize_int8(self.q, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = x.reshape(-1, self.in_features)
        kernel = self.use_kernel and int8_kernel_works(x.device, x.dtype, self.out_features, self.in_features)
        if kernel:
            y = torch._weight_int8pack_mm(x2d.contiguous(), self.q, self.scale.to(x.dtype))
        else:
            y = F.linear(x2d, self.dequantized_weight().to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


# --- the model ---------------------------------------------------------------------------------------------------


def quantize_model(model: GPT, dtype: torch.dtype | None = None) -> GPT:
    """A copy of `model` with every nn.Linear inside the transformer blocks (attention's c_attn and c_proj, the
    MLP's) replaced by an Int8Linear, in eval mode; `model` itself is left as it was.

    `dtype`: what the copy computes in (activations, norms, embedding, scales and biases; the int8 weights stay
    int8). None keeps the model's. On a CPU, pass torch.bfloat16: PyTorch's int8 kernel has a vectorised path for
    bfloat16 inputs and only a plain loop for float32 ones, slower than the float32 matmul it replaces.

    The token embedding stays in float, because it is also the output head (tied weights): every logit is a dot
    product with one of its rows, with no norm after it to absorb the error, and a lookup table would need its own
    int8 path. llama.cpp and gpt-fast likewise keep the output layer at higher precision. In a small model it is a
    large share of the weights (4,096 x 128, two fifths of the `cpu` preset's); in a big one a small share.
    """
    quantized = copy.deepcopy(model)
    for block in quantized.transformer.h:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear.from_linear(child))
    if dtype is not None:
        quantized.to(dtype)  # floating tensors only: the int8 weights stay as they are
    return quantized.eval()


def weight_bytes(model: nn.Module) -> int:
    """The bytes held by all parameters and buffers of `model` (tied weights counted once)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
