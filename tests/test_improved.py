"""The improved mode and the loss variants of its ablation: registered, finite, and the behaviours they promise."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from zeroig_plugin import InputError, StackExposure, ZeroIG
from zeroig_plugin.improved import (
    IMPROVED_MODE,
    MAX_OUTPUT_GAIN,
    ImprovedOptions,
    ablation_recipes,
    apply_gain,
    chroma_consistency,
    exposure_gain,
    exposure_gamma,
    gamma_targets,
    illuminant_colour,
    illumination_target,
    improved_loss_terms,
    linear_to_srgb,
    luma,
    make_loss,
    rec601_ycbcr,
    srgb_to_linear,
)
from zeroig_plugin.losses import texture_mask
from zeroig_plugin.networks import published_init
from zeroig_plugin.objective import (
    MAX_BRIGHTNESS,
    PUBLISHED_BRIGHTNESS,
    PUBLISHED_MAX_GAIN,
    brightness_target,
    faithful_loss_terms,
)
from zeroig_plugin.recipes import DEFAULT_MODE, available_modes, get_recipe

PUBLISHED = ImprovedOptions(exposure="published", chroma_weight=0.0, fix_quirks=False)
GAMMA = ImprovedOptions(exposure="gamma", fix_quirks=True)


def _dark_scene(size: int = 32, level: float = 0.06, seed: int = 0, noise: float = 0.004) -> np.ndarray:
    """A colour-neutral (gray) textured scene, darkened, with a little noise: ``(size, size, 3)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    scene = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.15 * (xx > 0.5)
    image = level * np.repeat(scene[..., None], 3, -1) + rng.normal(0, noise, (size, size, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def _cast(image: np.ndarray) -> float:
    means = image.reshape(-1, 3).mean(0) * 255
    return float(np.abs(means - means.mean()).mean())


def test_improved_is_the_default_and_faithful_stays_published():
    assert IMPROVED_MODE in available_modes() and "faithful" in available_modes()
    assert DEFAULT_MODE == IMPROVED_MODE and get_recipe("default").name == IMPROVED_MODE
    faithful, improved = get_recipe("faithful"), get_recipe(IMPROVED_MODE)
    assert faithful.weight_average is None and faithful.inference_statistics == "running"
    assert improved.weight_average and improved.inference_statistics == "image"
    assert faithful.late_learning_rate is None and improved.learning_rate_at(0) == faithful.learning_rate
    assert improved.learning_rate_at(10_000) < faithful.learning_rate
    assert improved.loss is faithful.loss  # the published loss: only the readout changes


def test_published_options_reproduce_the_faithful_terms():
    image = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 0.2
    expected = faithful_loss_terms(published_init(2), image)
    got = improved_loss_terms(published_init(2), image, PUBLISHED)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_improved_loss_is_finite_and_reaches_every_network():
    net = published_init(2)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.1
    terms = improved_loss_terms(net, image)
    assert {"illumination", "exposure"} <= terms.keys()
    assert "chroma" in improved_loss_terms(net, image, ImprovedOptions(chroma_weight=10.0))
    loss = make_loss()(net, image)
    assert torch.isfinite(loss)
    loss.backward()
    for part in (net.enhance, net.denoise_1, net.denoise_2):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_every_change_is_a_real_change():
    net = published_init(2)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.1
    base = improved_loss_terms(net, image, PUBLISHED)
    quirks = improved_loss_terms(net, image, replace(PUBLISHED, fix_quirks=True))
    assert not torch.allclose(quirks["texture_consistency"], base["texture_consistency"])
    gamma = improved_loss_terms(net, image, replace(PUBLISHED, exposure="gamma"))
    assert not torch.allclose(gamma["illumination"], base["illumination"])
    assert "chroma" in improved_loss_terms(net, image, replace(PUBLISHED, chroma_weight=1000.0))
    assert torch.equal(improved_loss_terms(net, image, replace(PUBLISHED, max_gain=100.0))["exposure"], base["exposure"])
    variants = ablation_recipes()
    assert variants["faithful+image-statistics"].weight_average is None
    assert variants["faithful+image-statistics"].late_learning_rate is None
    assert variants["improved-late-rate"].late_learning_rate is None
    assert variants["improved-selection"].select_after is None and get_recipe(IMPROVED_MODE).select_after
    assert variants["faithful+image-statistics"].select_after is None
    assert variants["faithful+ema"].inference_statistics == "running"
    assert variants["improved+gamma"].loss is not get_recipe(IMPROVED_MODE).loss


def _differences(a, b) -> dict:
    """The fields of two recipes that differ, name and description aside: ``{field: (a's, b's)}``."""
    return {
        name: (getattr(a, name), getattr(b, name))
        for name in a.__dataclass_fields__
        if name not in ("name", "description") and getattr(a, name) != getattr(b, name)
    }


def test_each_ablation_row_changes_exactly_one_thing():
    """benchmarks/ablation.py reads each row as one change: the published method plus one, or the default less one."""
    variants, faithful, improved = ablation_recipes(), get_recipe("faithful"), get_recipe(IMPROVED_MODE)
    assert _differences(faithful, variants["faithful+image-statistics"]) == {"inference_statistics": ("running", "image")}
    assert _differences(faithful, variants["faithful+ema"]) == {"weight_average": (None, improved.weight_average)}
    taken_out = {
        "improved-image-statistics": {"inference_statistics": ("image", "running")},
        "improved-average": {"weight_average": (improved.weight_average, None)},
        "improved-late-rate": {"late_learning_rate": (improved.late_learning_rate, None)},
        "improved-selection": {"select_after": (improved.select_after, None)},
        "improved-ensemble": {"inference_ensemble": (improved.inference_ensemble, 1)},
        "improved-post-gain": {"fit_brightness_ratio": (improved.fit_brightness_ratio, None)},
        "improved-linear-light": {"gain_in_linear_light": (True, False)},
        "improved-global-tone": {"global_tone": (True, False)},
    }
    for name, difference in taken_out.items():
        assert _differences(improved, variants[name]) == difference, name


def test_exposure_target_rises_for_darker_inputs():
    base = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    gammas = [float(exposure_gamma(0.5 + 0.5 * base))]  # mean 0.75: already bright
    gammas += [float(exposure_gamma(base * level)) for level in (0.8, 0.3, 0.1, 0.03)]
    assert gammas[0] == pytest.approx(1.0, abs=1e-3)  # already bright: left alone
    assert all(a > b for a, b in zip(gammas, gammas[1:]))  # darker -> stronger lift
    for level in (0.8, 0.3, 0.1, 0.03):
        y = base * level
        target = illumination_target(y, exposure_gamma(y))
        lifted = (y.clamp(1e-4, 1) / target).mean()
        assert float(lifted) == pytest.approx(0.5, abs=0.01)  # the lift aims the mean at mid-grey
        assert float(target.max()) <= 1.0 + 1e-6


def test_gamma_curve_keeps_highlights_and_order():
    y = torch.linspace(0.001, 1, 100).view(1, 1, 10, 10)
    lifted = y / illumination_target(y, torch.full((1, 1, 1, 1), 0.4))
    assert float(lifted.max()) <= 1.0 + 1e-6
    assert torch.all(lifted.flatten().diff() > 0)


def test_chroma_consistency_measures_channel_spread():
    gray = torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8)
    assert float(chroma_consistency(gray)) == pytest.approx(0.0, abs=1e-12)
    tinted = gray * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
    assert float(chroma_consistency(tinted)) > 1e-4


def test_rec601_helpers():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert float(luma(rgb)) == pytest.approx(0.299)
    white = torch.ones(1, 3, 2, 2)
    torch.testing.assert_close(rec601_ycbcr(white)[0, :, 0, 0], torch.tensor([235 / 255, 128 / 255, 128 / 255]), atol=2e-3, rtol=0)
    # the quirk-fixed texture mask sees luma texture: a pure blue pattern weighs 0.114, not 0.299
    a = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    assert texture_mask(a, a).min() == 1  # identical textures match either way


def _published_target(ld: torch.Tensor) -> torch.Tensor:
    k = brightness_target(ld)
    return torch.clamp(torch.pow(ld * k, k) * torch.pow(0.7, -k) / k, 1e-9, 1)


def _tinted_neutral_scene() -> torch.Tensor:
    """A gray scene seen under a bluish illuminant (camera tint), dark: ``(1, 3, 32, 32)``."""
    scene = torch.from_numpy(_dark_scene(noise=0.0)).permute(2, 0, 1).unsqueeze(0)
    return scene * torch.tensor([0.85, 1.0, 1.15]).view(1, 3, 1, 1)


def test_illumination_target_is_one_map_for_all_channels():
    """The cast mechanism: the published per-channel power-law target ``(k L)^k`` (k ~ 8 here)
    blows a 15 % channel difference up several-fold, so the channels' illuminations (and the
    output's colour) drift apart; the gamma target is one luminance map for all channels."""
    ld = _tinted_neutral_scene()
    shared = gamma_targets(ld, GAMMA)
    assert float(chroma_consistency(shared)) < 1e-12
    published = _published_target(ld)
    assert float(chroma_consistency(published)) > 1e-4
    # the enhanced image keeps the input's chromaticity under the shared target...
    ratio_in = ld.mean(dim=(2, 3))[0, 2] / ld.mean(dim=(2, 3))[0, 0]
    lifted = ld / shared
    assert float(lifted.mean(dim=(2, 3))[0, 2] / lifted.mean(dim=(2, 3))[0, 0]) == pytest.approx(float(ratio_in), rel=0.02)
    # ...and the published one inverts and exaggerates the tint (blue input -> strongly red output)
    swung = (ld / published).clamp(0, 1).mean(dim=(2, 3))[0]
    assert float(swung[0] / swung[2]) > float(ratio_in) ** -1


def test_white_balance_neutralises_a_tinted_gray_scene():
    ld = _tinted_neutral_scene()
    colour = illuminant_colour(ld).flatten()
    assert float(colour[0]) < 1 < float(colour[2])
    balanced = ld / gamma_targets(ld, replace(GAMMA, white_balance=True))
    means = balanced.mean(dim=(2, 3))[0] * 255
    plain = (ld / gamma_targets(ld, GAMMA)).mean(dim=(2, 3))[0] * 255
    assert float((means - means.mean()).abs().mean()) < 0.25 * float((plain - plain.mean()).abs().mean())
    # a neutral image is left as it is
    gray = ld.mean(1, keepdim=True).expand_as(ld)
    torch.testing.assert_close(illuminant_colour(gray).flatten(), torch.ones(3), atol=1e-3, rtol=0)


def test_improved_fit_keeps_a_gray_scene_gray_at_mid_grey():
    """The published readout of this fit blows the scene out (mean ~0.96) with a cast; the
    training-forward readout holds the published exposure target (mean ~0.5) and stays gray."""
    image = _dark_scene(size=24, noise=0.0)
    model = ZeroIG(mode=IMPROVED_MODE, device="cpu")
    model.fit(image, steps=250)
    out = model.infer(image).denoise
    assert _cast(out) < 3.0  # 3 of 255 levels on a gray scene
    assert 0.35 < out.mean() < 0.65


def test_improved_brightens_a_dark_image_towards_mid_grey():
    image = _dark_scene(size=24, level=0.04)
    model = ZeroIG(mode=IMPROVED_MODE, device="cpu")
    report = model.fit(image, steps=20)
    assert all(np.isfinite(report.losses))
    out = model.infer(image)
    assert out.denoise.shape == image.shape
    assert out.denoise.mean() > 5 * image.mean()


def test_brightness_scales_the_published_exposure_factor():
    ld = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 0.1
    assert torch.equal(brightness_target(ld), brightness_target(ld, PUBLISHED_BRIGHTNESS))
    assert torch.allclose(brightness_target(ld, 0.25) * 2, brightness_target(ld, 0.5))
    assert float(brightness_target(torch.full_like(ld, 0.6), 0.3)) == 1.0  # never darkens
    very_dark = torch.full_like(ld, 0.01)
    assert float(brightness_target(very_dark)) == PUBLISHED_MAX_GAIN
    assert float(brightness_target(very_dark, max_gain=100)) == pytest.approx(0.5 / (0.01 * 1.03), rel=1e-4)  # weights sum to 1.03
    net, image = published_init(2), ld * 2
    default, lower = faithful_loss_terms(net, image), faithful_loss_terms(net, image, 0.25)
    changed = {name for name in default if not torch.equal(default[name], lower[name])}
    assert changed == {"illumination", "exposure"}


@pytest.mark.parametrize("brightness", [0.25, 0.7])
def test_the_output_mean_follows_the_brightness_asked_for(brightness):
    """Within the gain's cap (8 ** 2.4 = 147 on the light): this scene reaches 0.7 at about 128."""
    image = _dark_scene(size=24, level=0.08)
    model = ZeroIG(device="cpu", brightness=brightness)
    assert model.recipe.brightness == brightness and get_recipe("default").brightness == PUBLISHED_BRIGHTNESS
    model.fit(image, steps=100)
    assert float(model.infer(image).denoise.mean()) == pytest.approx(brightness, abs=0.07)


@pytest.mark.parametrize("brightness", [0.0, -0.1, MAX_BRIGHTNESS + 0.01])
def test_brightness_out_of_range_is_refused(brightness):
    with pytest.raises(ValueError, match="brightness"):
        ZeroIG(device="cpu", brightness=brightness)


def test_exposure_gain_reaches_the_level_asked_for_through_the_clip():
    image = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(5)) * 0.3
    image[1, :, :10] = 0.9  # a highlight that the gain clips
    gain = exposure_gain(image, 0.5)
    levels = luma((image * gain).clamp(0, 1)).mean(dim=(1, 2, 3))
    torch.testing.assert_close(levels, torch.full_like(levels, 0.5), atol=1e-5, rtol=0)
    assert float(gain[1]) > 0.5 / float(luma(image[1:]).mean())  # clipped pixels ask for more
    assert float(exposure_gain(torch.full((1, 3, 8, 8), 0.8), 0.4)) == pytest.approx(0.5, abs=1e-5)  # darkens too
    assert float(exposure_gain(torch.zeros(1, 3, 8, 8), 0.5)) == pytest.approx(MAX_OUTPUT_GAIN, rel=1e-5)


def test_srgb_decoding_is_the_standards_and_encoding_its_inverse():
    encoded = torch.linspace(0, 1, 1001)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(encoded)), encoded, atol=1e-5, rtol=0)
    assert float(srgb_to_linear(torch.tensor(0.5))) == pytest.approx(0.2140, abs=1e-4)  # IEC 61966-2-1 mid-grey
    assert float(srgb_to_linear(torch.tensor(0.04))) == pytest.approx(0.04 / 12.92)  # the linear toe


def test_a_gain_in_linear_light_lifts_the_shadows_more_than_the_highlights_and_reaches_the_level():
    """Brightening the light an sRGB image encodes, as a longer exposure would: values are
    multiplied by more in the shadows than in the highlights, where a gain on the values multiplies
    all alike; either gain brings the mean luminance to the level asked for."""
    image = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(5)) * 0.3
    image[1, :, :10] = 0.9
    for linear_light in (False, True):
        gain = exposure_gain(image, 0.5, linear_light=linear_light)
        levels = luma(apply_gain(image, gain, linear_light)).mean(dim=(1, 2, 3))
        torch.testing.assert_close(levels, torch.full_like(levels, 0.5), atol=1e-5, rtol=0)
    gain = exposure_gain(image[:1], 0.5, linear_light=True)
    shadow, light = torch.tensor([[[[0.02]], [[0.02]], [[0.02]]]]), torch.tensor([[[[0.25]], [[0.25]], [[0.25]]]])
    shadow_ratio = float(apply_gain(shadow, gain, True).mean()) / 0.02
    light_ratio = float(apply_gain(light, gain, True).mean()) / 0.25
    assert shadow_ratio > 1.5 * light_ratio > 1.5
    assert float(exposure_gain(torch.zeros(1, 3, 8, 8), 0.5, linear_light=True)) == pytest.approx(MAX_OUTPUT_GAIN ** 2.4, rel=1e-5)


def test_a_fit_aimed_lower_is_brought_to_the_brightness_by_one_gain():
    recipe = get_recipe(IMPROVED_MODE)
    assert 0 < recipe.fit_brightness_ratio < 1 and get_recipe("faithful").fit_brightness_ratio is None
    assert recipe.fit_brightness() == pytest.approx(recipe.fit_brightness_ratio * recipe.brightness)
    assert ablation_recipes()["improved-post-gain"].fit_brightness_ratio is None
    assert recipe.gain_in_linear_light and not ablation_recipes()["improved-linear-light"].gain_in_linear_light
    assert ZeroIG(device="cpu", exposure_gain=False).recipe.fit_brightness_ratio is None
    assert ZeroIG(mode="faithful", device="cpu", exposure_gain=True).recipe.fit_brightness_ratio == recipe.fit_brightness_ratio
    image = _dark_scene(size=24, level=0.04)
    model = ZeroIG(device="cpu", brightness=0.4)
    model.fit(image, steps=30)
    whole, tiled = model.infer(image, ensemble=2), model.infer(image, ensemble=2, tile=16)
    assert float(luma(torch.from_numpy(whole.denoise).permute(2, 0, 1)[None]).mean()) == pytest.approx(0.4, abs=1e-4)
    np.testing.assert_allclose(tiled.denoise, whole.denoise, atol=1e-5)
    unscaled = replace(model.recipe, fit_brightness_ratio=None)
    model.recipe = unscaled
    ratio = whole.enhance.mean() / model.infer(image, ensemble=2).enhance.mean()
    assert ratio > 1.05  # the same fit, read out without the gain, is darker
    np.testing.assert_array_equal(model.infer(image, ensemble=2).linear, whole.linear)  # the gain leaves it alone


def _sparse_sample(rng: np.random.Generator) -> np.ndarray:
    """A dim fluorescence-like field: three 6x6 cells at 0.5 (about 3 % of it), the rest at 0.02, with noise."""
    field = np.full((64, 64), 0.02, np.float32)
    for top, left in ((8, 10), (30, 40), (50, 20)):
        field[top : top + 6, left : left + 6] = 0.5
    return np.clip(field + rng.normal(0, 0.005, field.shape), 0, 1).astype(np.float32)


def test_headroom_brightness_leaves_a_sparse_samples_highlights_unclipped_and_keeps_dense_fields_at_the_ceiling():
    from zeroig_plugin.improved import HEADROOM, headroom_brightness

    rng = np.random.default_rng(0)
    sparse = torch.from_numpy(_sparse_sample(rng)).expand(1, 3, 64, 64)
    brightness = headroom_brightness(sparse)
    gain = brightness / float(sparse.mean())  # what the exposure rule applies to reach it
    assert 0.05 <= brightness < 0.2 and gain * 0.5 == pytest.approx(HEADROOM, rel=0.1)  # cells just below the clip
    dense = torch.from_numpy(rng.uniform(0.1, 0.3, (1, 3, 64, 64)).astype(np.float32))
    assert headroom_brightness(dense) == 0.5 and headroom_brightness(dense, ceiling=0.4) == 0.4
    assert headroom_brightness(torch.zeros(1, 3, 16, 16)) == 0.5


def test_headroom_brightness_is_set_once_from_the_picture_within_its_borders():
    rng = np.random.default_rng(1)
    picture = _sparse_sample(rng)
    framed = np.pad(picture, 8)  # zero fill around it, as around a registered plane
    brightness = {}
    for name, image in (("picture", picture), ("framed", framed)):
        model = ZeroIG(device="cpu", brightness="headroom", exposure_gain=False)
        model.fit(image, 1)
        brightness[name] = model.recipe.brightness
        model.fit(np.full((32, 32), 0.3, np.float32), 1)  # a later image does not move it
        assert model.recipe.brightness == brightness[name]
    assert brightness["framed"] == brightness["picture"] < 0.2
    inferred_only = ZeroIG(device="cpu", brightness="headroom")
    inferred_only.infer(picture, ensemble=1)
    assert inferred_only.recipe.brightness == brightness["picture"]
    with pytest.raises(ValueError, match="headroom"):
        ZeroIG(device="cpu", brightness="bright")


def test_the_default_brings_linear_and_the_input_up_by_one_gain_in_linear_light():
    """The default's global tone: ``denoise`` is the fit's ``linear`` at the brightness by one gain
    on its light, ``enhance`` the input by the same gain; ``improved-global-tone`` fits the same and
    reads ``denoise`` through the illumination map's local tone instead."""
    assert _differences(get_recipe(IMPROVED_MODE), ablation_recipes()["improved-global-tone"]) == {"global_tone": (True, False)}
    image = _dark_scene(size=24, level=0.04)
    models = [ZeroIG(device="cpu", brightness=0.4) for _ in range(2)]
    models[1].recipe = replace(models[1].recipe, global_tone=False)
    for model in models:
        model.fit(image, steps=5)
    globally, locally = (model.infer(image, ensemble=1) for model in models)
    np.testing.assert_allclose(globally.linear, locally.linear, atol=1e-6)
    assert np.abs(globally.denoise - locally.denoise).max() > 0.01
    as_tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]  # noqa: E731
    gain = exposure_gain(as_tensor(globally.linear), 0.4, linear_light=True)
    np.testing.assert_allclose(as_tensor(globally.denoise), apply_gain(as_tensor(globally.linear), gain, True), atol=1e-5)
    np.testing.assert_allclose(as_tensor(globally.enhance), apply_gain(as_tensor(image), gain, True), atol=1e-5)
    assert float(luma(as_tensor(globally.denoise)).mean()) == pytest.approx(0.4, abs=1e-4)


def test_bring_up_with_an_images_own_gain_gives_what_inference_gave():
    rgb = _dark_scene(size=24, level=0.04)
    gray = np.ascontiguousarray(rgb.mean(-1))
    framed = np.pad(gray, 6)  # zero fill: a border passed through
    for image, finish in ((rgb, False), (gray, False), (framed, True)):
        model = ZeroIG(device="cpu", brightness=0.4, average_with_tv=True, finish_with_tv=finish)
        model.fit(image, steps=3)
        outputs = model.infer(image, ensemble=1)
        gain = model.exposure_gain_for(image, outputs.linear)
        enhance, denoise = model.bring_up(image, outputs.linear, gain)
        np.testing.assert_allclose(enhance, outputs.enhance, atol=1e-6)
        np.testing.assert_allclose(denoise, outputs.denoise, atol=1e-6)
        darker = model.bring_up(image, outputs.linear, gain / 2)[1]
        assert darker.mean() < 0.8 * denoise.mean()
    assert (denoise[:6] == 0).all() and (darker[:, -6:] == 0).all()
    with pytest.raises(InputError, match="laid out"):
        model.bring_up(framed, outputs.linear[1:], gain)
    for without_global_tone in (ZeroIG(device="cpu", exposure_gain=False), ZeroIG(mode="faithful", device="cpu")):
        with pytest.raises(ValueError, match="denoise up from linear"):
            without_global_tone.exposure_gain_for(gray, gray)
        with pytest.raises(ValueError, match="each plane's level"):
            StackExposure(without_global_tone)


def _stack_exposure(model: ZeroIG, planes: list[np.ndarray]) -> tuple[StackExposure, list[float]]:
    """A :class:`StackExposure` of ``planes``, each fitted 2 steps on from the one before, and
    each plane's own gain."""
    exposure, own = StackExposure(model), []
    for z, plane in enumerate(planes):
        model.fit(plane, steps=2)
        linear = model.infer(plane, ensemble=1).linear
        exposure.add(z, plane, linear)
        own.append(model.exposure_gain_for(plane, linear))
    return exposure, own


def test_a_stacks_planes_share_the_smallest_of_their_gains():
    bright = _dark_scene(size=24, level=0.06)
    planes = [bright, bright / 3, bright / 1.5]  # one field under less light, as deeper or later planes
    model = ZeroIG(device="cpu", brightness=0.4)
    assert StackExposure(model).gain is None
    exposure, own = _stack_exposure(model, planes)
    assert exposure.gain == min(own) == own[0] < own[2] < own[1]
    brought_up = list(exposure.brought_up())
    assert [z for z, _, _ in brought_up] == [0, 1, 2]
    as_tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]  # noqa: E731
    for (z, enhance, denoise), plane in zip(brought_up, planes):
        np.testing.assert_allclose(as_tensor(enhance), apply_gain(as_tensor(plane), torch.tensor(min(own)), True), atol=1e-5)
    levels = [float(luma(as_tensor(denoise)).mean()) for _, _, denoise in brought_up]
    assert levels[0] == pytest.approx(0.4, abs=1e-3) and levels[0] > levels[2] > levels[1]


def test_a_picture_brighter_than_the_brightness_keeps_its_level():
    bright = np.clip(_dark_scene(size=24, level=0.06) * 30, 0, 1)  # a well-exposed picture, mean 0.86
    model = ZeroIG(device="cpu", brightness=0.4)
    model.fit(bright, steps=2)
    outputs = model.infer(bright, ensemble=1)
    assert model.exposure_gain_for(bright, outputs.linear) == 1.0
    np.testing.assert_allclose(outputs.enhance, bright, atol=1e-5)
    np.testing.assert_allclose(outputs.denoise, outputs.linear, atol=1e-5)


def test_neither_a_bright_nor_a_blank_plane_darkens_the_rest_of_a_stack():
    dim = _dark_scene(size=24, level=0.06)
    planes = [dim, np.clip(dim * 30, 0, 1), np.ones_like(dim), dim / 2]  # a flash, a saturated blank frame
    model = ZeroIG(device="cpu", brightness=0.4)
    exposure, own = _stack_exposure(model, planes)
    assert exposure.gain == min(own[0], own[1], own[3]) >= 1.0  # the blank frame does not count
    for (_, enhance, _), plane in zip(exposure.brought_up(), planes):
        assert (enhance >= plane - 1e-5).all()  # no plane is darkened
    blank_only = StackExposure(model)
    blank_only.add(0, np.full_like(dim, 0.02), np.full_like(dim, 0.02))
    blank_only.add(1, dim, model.infer(dim, ensemble=1).linear)
    assert blank_only.gain == model.exposure_gain_for(dim, model.infer(dim, ensemble=1).linear) > 1
