"""ZERO-IG zero-shot low-light enhancement and denoising: the shared core.

Example::

    from zeroig_plugin import ZeroIG, read_image, write_image
    image = read_image("dark.png")
    model = ZeroIG(device="auto")              # mode="faithful" is the published method, exactly
    model.fit(image.pixels, steps=2000)
    outputs = model.infer(image.pixels)        # .enhance, .denoise (and .linear), float32 in [0, 1]
    write_image("bright.png", outputs.denoise, bits=image.bits, alpha=image.alpha,
                icc_profile=image.icc_profile, exif=image.exif)

Names are imported on first use so that ``zeroig --help`` does not load torch.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "ZeroIG": "engine",
    "FitReport": "engine",
    "ImageOutputs": "engine",
    "StackExposure": "engine",
    "describe_device": "engine",
    "inference_passes": "engine",
    "ENSEMBLE_SIZES": "ensemble",
    "ContentBox": "borders",
    "find_content": "borders",
    "paste_content": "borders",
    "PUBLISHED_BRIGHTNESS": "objective",
    "MAX_BRIGHTNESS": "objective",
    "HEADROOM_BRIGHTNESS": "improved",
    "resolve_device": "engine",
    "load_state_dict": "checkpoint",
    "save_state_dict": "checkpoint",
    "release_freed_memory": "host_memory",
    "processing_record": "provenance",
    "record_text": "provenance",
    "brightness_applied": "provenance",
    "available_modes": "recipes",
    "get_recipe": "recipes",
    "register_recipe": "recipes",
    "Recipe": "recipes",
    "LoadedImage": "imageio",
    "LoadedStack": "imageio",
    "value_scale": "imageio",
    "fill_no_data": "imageio",
    "read_image": "imageio",
    "read_stack": "imageio",
    "write_image": "imageio",
    "write_stack": "imageio",
    "write_tiff": "imageio",
    "ZeroIGError": "errors",
    "InputError": "errors",
    "OutputError": "errors",
    "CheckpointError": "errors",
    "DeviceError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
