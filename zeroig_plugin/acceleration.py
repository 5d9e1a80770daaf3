"""How the engine runs a training step on its device: layout, precision, compilation, CUDA graphs.

None of these change what is computed, except ``network_dtype`` (bf16 networks, opt-in) and
``tf32`` (the rounding of the convolutions' products): they change how fast. Each falls back
cleanly where it is unavailable, and the engine records why in ``ZeroIG.acceleration_notes``.
``auto`` keeps CPU runs exactly as before (plain eager float32).
"""
from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn

__all__ = [
    "Acceleration",
    "AutocastNetworks",
    "resolve_acceleration",
    "compile_unavailable_reason",
    "cuda_graph_unavailable_reason",
    "bf16_unavailable_reason",
    "convolution_precision",
    "exact_convolutions",
]


@dataclass(frozen=True)
class Acceleration:
    """Options for the training step.

    Attributes:
        channels_last: networks and inputs in NHWC memory layout (faster cuDNN kernels).
        network_dtype: run the three networks under autocast in this dtype (``torch.bfloat16``);
            the losses stay float32. ``None`` keeps float32 (exact).
        compile: ``torch.compile`` the loss (forward and backward), fusing its elementwise chains.
        cuda_graph: capture one whole step (forward, backward, clip, Adam) as a CUDA graph after a
            few eager warm-up steps, then replay it: no per-kernel launch cost, no host work.
        tf32: let cuDNN run float32 convolutions on TF32 tensor cores (CUDA only; products
            rounded to 10 mantissa bits, sums in float32). PyTorch's own default, under which the
            published code ran; about twice as fast on an H100 (BENCHMARKS.md).
    """

    channels_last: bool = False
    network_dtype: torch.dtype | None = None
    compile: bool = False
    cuda_graph: bool = False
    tf32: bool = False


PRESETS = {
    # Plain eager float32, as the published loop runs (without its TF32 convolutions).
    "off": Acceleration(),
    # The CUDA default: whole-step CUDA graphs (checked against eager steps on an H100: the same
    # losses to 2e-6 in float32) and PyTorch's default TF32 convolutions.
    "auto": Acceleration(channels_last=True, cuda_graph=True, tf32=True),
    # As auto, in full float32: the exact computation to compare faster ones with.
    "exact": Acceleration(channels_last=True, cuda_graph=True),
    # Everything, bf16 networks included: fastest, not bit-comparable with the published run.
    "max": Acceleration(channels_last=True, network_dtype=torch.bfloat16, compile=True, cuda_graph=True, tf32=True),
}


def compile_unavailable_reason(
    device_type: str,
    platform: str = sys.platform,
    capability: tuple[int, int] | None = None,
    triton_available: bool | None = None,
) -> str | None:
    """Why ``torch.compile`` is not used for a training step on this machine, or ``None``.

    Only CUDA is compiled. On CPU (measured, BENCHMARKS.md) compiling the loss saved 8% of a bf16
    step after about 5 minutes of compilation, and with the networks inside the compiled region
    inductor's bf16 reductions made the fit diverge.
    """
    if device_type != "cuda":
        return f"torch.compile is used on CUDA only (device is {device_type})"
    if platform.startswith("win"):
        return "torch.compile is not supported on Windows here"
    if triton_available is None:
        triton_available = importlib.util.find_spec("triton") is not None
    if not triton_available:
        return "torch.compile needs triton, which is not installed"
    if capability is not None and capability < (7, 0):
        return f"torch.compile needs a GPU of compute capability 7.0 or newer (this one is {capability[0]}.{capability[1]})"
    return None


def cuda_graph_unavailable_reason(device_type: str) -> str | None:
    """Why CUDA-graph capture is not used on this device, or ``None``."""
    if device_type != "cuda":
        return f"CUDA graphs need a CUDA device (device is {device_type})"
    return None


def cpu_has_bf16_kernels() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (on x86: AVX-512 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_unavailable_reason(
    device_type: str, capability: tuple[int, int] | None = None, cpu_bf16_kernels: bool | None = None
) -> str | None:
    """Why bf16 networks are not used on this device, or ``None``.

    CUDA needs compute capability 8.0. A CPU without oneDNN's bf16 kernels emulates them: on a
    2-core AVX2 EPYC a 128x128 step took 4.6 s in bf16 against 0.39 s in float32, and 0.55 s in
    channels-last float32 (BENCHMARKS.md).
    """
    if device_type == "cuda":
        if capability is not None and capability < (8, 0):
            return "bf16 networks need compute capability 8.0 or newer; using float32"
        return None
    if cpu_bf16_kernels is None:
        cpu_bf16_kernels = cpu_has_bf16_kernels()
    if not cpu_bf16_kernels:
        return ("this CPU has no native bf16 kernels (AVX-512 or AMX), where bf16 networks run more than 10x slower "
                "and channels-last float32 up to 2x slower; using plain float32")
    return None


def resolve_acceleration(requested: str | Acceleration, device: torch.device) -> tuple[Acceleration, list[str]]:
    """The options to use on ``device`` and a note for each requested one that is unavailable.

    ``requested`` is ``"auto"`` (CUDA: channels-last, whole-step CUDA graphs, TF32 convolutions;
    CPU: none), ``"exact"`` (as auto in full float32), ``"off"``, ``"max"`` (adds bf16 networks
    and torch.compile) or an :class:`Acceleration`. ``"max"`` is plain float32 on a CPU without
    native bf16 kernels; an :class:`Acceleration` asking for bf16 there gets it.
    """
    preset = isinstance(requested, str)
    if preset:
        if requested not in PRESETS:
            raise ValueError(f"unknown acceleration {requested!r}: choose from {', '.join(PRESETS)}")
        if requested in ("auto", "exact") and device.type != "cuda":
            return PRESETS["off"], []
        requested = PRESETS[requested]
    notes = []
    options = requested
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    if options.compile:
        reason = compile_unavailable_reason(device.type, capability=capability)
        if reason:
            notes.append(reason)
            options = replace(options, compile=False)
    if options.cuda_graph:
        reason = cuda_graph_unavailable_reason(device.type)
        if reason:
            notes.append(reason)
            options = replace(options, cuda_graph=False)
    if options.tf32 and device.type != "cuda":
        options = replace(options, tf32=False)  # a cuDNN setting: nothing to fall back from elsewhere
    # An explicit Acceleration keeps slow-but-working CPU bf16 (to measure it); the preset wants speed.
    if options.network_dtype == torch.bfloat16 and (preset or device.type == "cuda"):
        reason = bf16_unavailable_reason(device.type, capability)
        if reason:
            notes.append(reason)
            # On a CPU channels-last is there for the bf16 kernels; in float32 it is the slower layout.
            options = replace(options, network_dtype=None, channels_last=options.channels_last and device.type == "cuda")
    return options, notes


@contextmanager
def _cudnn_tf32(allowed: bool):
    """Within it, cuDNN may run float32 convolutions in TF32 exactly when ``allowed``; the
    process-wide setting is restored after."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def convolution_precision(options: Acceleration, device: torch.device):
    """Within it, cuDNN convolutions on ``device`` use TF32 exactly when ``options.tf32`` says so;
    the process-wide setting is restored after (a no-op off CUDA)."""
    return _cudnn_tf32(options.tf32) if device.type == "cuda" else nullcontext()


def exact_convolutions():
    """Within it, cuDNN convolutions run in exact float32 (no TF32), whatever the caller set; the
    process-wide setting is restored after. For computations that TF32's rounding of the inputs
    (10 mantissa bits, about 5e-4 relative) would swamp, such as finite differences."""
    return _cudnn_tf32(False)


class _Autocast(nn.Module):
    """Runs ``module`` under autocast and hands back float32: ``(B, C, H, W) -> (B, C', H, W)``."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No cast cache: a cached bf16 weight copy would go stale across CUDA-graph replays.
        with torch.autocast(x.device.type, dtype=self.dtype, cache_enabled=False):
            out = self.module(x)
        return out.float()


class AutocastNetworks(nn.Module):
    """The three networks of a ``ZeroIGNet`` (``enhance``, ``denoise_1``, ``denoise_2``), each run
    under autocast; a drop-in ``net`` for any recipe loss. Shares the wrapped parameters."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.enhance = _Autocast(net.enhance, dtype)
        self.denoise_1 = _Autocast(net.denoise_1, dtype)
        self.denoise_2 = _Autocast(net.denoise_2, dtype)
