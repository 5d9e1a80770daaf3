"""ZERO-IG zero-shot low-light enhancement and denoising: the shared core.

Public API::

    from zeroig_plugin import ZeroIG, read_image, write_image
    model = ZeroIG(device="auto")              # the default mode; mode="faithful" is the published method
    image = read_image("dark.png")
    model.fit(image.rgb, steps=2000)
    outputs = model.infer(image.rgb)           # .enhance and .denoise, float32 in [0, 1]
"""
from .checkpoint import load_state_dict, save_state_dict
from .engine import FitReport, ImageOutputs, ZeroIG, describe_device, resolve_device
from .errors import CheckpointError, DeviceError, InputError, OutputError, ZeroIGError
from .recipes import Recipe, available_modes, get_recipe, register_recipe

__all__ = [
    "ZeroIG",
    "FitReport",
    "ImageOutputs",
    "describe_device",
    "resolve_device",
    "load_state_dict",
    "save_state_dict",
    "available_modes",
    "get_recipe",
    "register_recipe",
    "Recipe",
    "ZeroIGError",
    "InputError",
    "OutputError",
    "CheckpointError",
    "DeviceError",
]
__version__ = "0.1.0"
