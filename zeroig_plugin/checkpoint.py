"""Weights files in the published format: a plain state dict, loaded with ``weights_only=True``."""
from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError, OutputError
from .networks import ZeroIGNet

__all__ = ["load_state_dict", "network_from_state_dict", "save_state_dict", "atomic_write_path"]

PICKLE_PROTOCOL_OPCODE = pickle.PROTO

_WIDTH_KEYS = {
    "enhancer_width": "enhance.in_conv.0.weight",
    "denoiser_width": "denoise_1.conv1.weight",
    "second_denoiser_width": "denoise_2.conv1.weight",
}


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ZERO-IG state dict from ``path`` without unpickling arbitrary objects.

    Accepts the published files and the ones :func:`save_state_dict` writes; a dict wrapping the
    weights under ``state_dict`` or ``model`` is unwrapped.

    Raises:
        CheckpointError: the file is missing, unreadable, or holds no ZERO-IG weights.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a weights file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    if not _looks_like_torch_save(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither the zip archive nor the pickle torch.save writes)")
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols before refusing them
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" in str(error).lower():
            raise CheckpointError(f"{path}: holds Python objects besides tensors; they are not unpickled "
                                  "(weights_only), so only plain state dicts load") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint") from None
    except Exception as error:  # torch raises many types for non-checkpoints
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({reason[:160]})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    _check_weights(loaded, str(path))
    return loaded


def _check_weights(state, source: str) -> None:
    """Refuse ``state`` unless it is a dict of tensors holding the ZERO-IG convolutions that set the
    networks' widths, all finite.

    Raises:
        CheckpointError: naming ``source`` and what is wrong.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: not a state dict of tensors")
    missing = [key for key in _WIDTH_KEYS.values() if key not in state]
    if missing:
        raise CheckpointError(f"{source}: not a ZERO-IG checkpoint (missing {', '.join(missing)})")
    not_convolutions = [key for key in _WIDTH_KEYS.values() if state[key].ndim != 4 or not state[key].numel()]
    if not_convolutions:
        raise CheckpointError(f"{source}: not a ZERO-IG checkpoint ({', '.join(not_convolutions)} not a convolution's weights)")
    not_finite = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if not_finite:
        raise CheckpointError(f"{source}: holds NaN or infinite weights ({', '.join(not_finite[:3])}), as a fit "
                              "that diverged saves them")


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle (its legacy format opens with protocol 2)."""
    try:
        with open(path, "rb") as file:
            first_byte = file.read(1)
        return first_byte == PICKLE_PROTOCOL_OPCODE or zipfile.is_zipfile(path)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None


def network_from_state_dict(state: dict[str, torch.Tensor], source: str = "weights") -> ZeroIGNet:
    """Build a :class:`ZeroIGNet` whose widths fit ``state`` and load it.

    Raises:
        CheckpointError: not a dict of finite tensors, or a tensor is missing or has the wrong
            shape (the message names ``source``).
    """
    _check_weights(state, source)
    widths = {name: int(state[key].shape[0]) for name, key in _WIDTH_KEYS.items()}
    net = ZeroIGNet(**widths)
    expected = net.state_dict()
    state = dict(state)
    for key in expected:  # files that store the shared block only once
        if key.startswith("enhance.blocks.") and key not in state:
            conv_key = "enhance.conv." + key.split(".", 3)[3]
            if conv_key in state:
                state[key] = state[conv_key]
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise CheckpointError(f"{source}: does not fit the ZERO-IG networks ({'; '.join(problems[:3])})")
    net.load_state_dict({k: state[k] for k in expected})
    return net


def atomic_write_path(path: Path) -> Path:
    """A temporary sibling of ``path`` to write to before renaming it into place."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}{path.suffix}")


def save_state_dict(net: ZeroIGNet, path: str | os.PathLike) -> None:
    """Write ``net``'s weights as a published-format state dict, atomically."""
    path = Path(path)
    temporary = atomic_write_path(path)
    try:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch reports a missing folder as a RuntimeError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
        raise OutputError(f"{path}: cannot write the weights ({reason})") from None
    finally:
        temporary.unlink(missing_ok=True)
