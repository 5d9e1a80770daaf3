"""Low-light video enhancement with ZERO-IG, each frame's fit warm-started from the previous one.

Public API (imported lazily, so ``video.cli`` can load without torch or PyAV)::

    from video import WarmStartEnhancer, WarmStartSettings, enhance_video, iter_enhanced_frames
    enhancer = WarmStartEnhancer(WarmStartSettings(iters_per_frame=2), device="auto")
    rgb_out = enhancer.enhance(rgb_uint8)                    # (H, W, 3) uint8 -> uint8, one frame
    for frame in iter_enhanced_frames("night.mp4", enhancer):  # frame.rgb, frame.pts, frame.time
        ...
    enhance_video("night.mp4", "night-enhanced.mp4", WarmStartEnhancer())

Modules: ``source`` (decode), ``sink`` (encode and mux), ``audio`` (audio copy), ``enhancer``
(warm state), ``scenecut``, ``temporal`` (motion-compensated temporal filter on the output),
``pipeline`` (threads, temporary file), ``metrics`` (temporal stability), ``cli`` (``zeroig video``).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "WarmStartEnhancer": "enhancer",
    "WarmStartSettings": "enhancer",
    "FrameReport": "enhancer",
    "DEFAULTS": "enhancer",
    "SceneCutDetector": "scenecut",
    "enhance_video": "pipeline",
    "iter_enhanced_frames": "pipeline",
    "RunResult": "pipeline",
    "VideoInterrupted": "pipeline",
    "probe": "source",
    "decode_frames": "source",
    "VideoInfo": "source",
    "VideoSink": "sink",
    "warping_error": "metrics",
    "luma_flicker": "metrics",
    "TemporalFilter": "temporal",
    "recursive_filter": "temporal",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'video' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
