"""napari plugin for ZERO-IG zero-shot low-light enhancement and denoising.

Contributes (see ``napari.yaml``) the *ZERO-IG enhance* dock widget, a *Layers > Filter* action
that docks it for the active image layer, and two generated sample images. The Qt-free logic
(intensity scaling, plane walking, warm-started stacks) is in :mod:`napari_zeroig.processing`.
"""
