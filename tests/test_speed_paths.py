"""The engine's speed options: what each device gets, clean fallbacks, crop mode, and (on a GPU)
that the graphed and compiled steps compute what the eager step computes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from zeroig_plugin import ZeroIG, get_recipe
from zeroig_plugin import acceleration
from zeroig_plugin.acceleration import (
    Acceleration,
    AutocastNetworks,
    bf16_unavailable_reason,
    compile_unavailable_reason,
    convolution_precision,
    cuda_graph_unavailable_reason,
    resolve_acceleration,
)
from zeroig_plugin.networks import published_init

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def dark() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 0.2, (24, 28, 3)).astype(np.float32)


def test_auto_and_exact_on_cpu_are_plain_eager_float32():
    assert resolve_acceleration("auto", CPU) == (Acceleration(), [])
    assert resolve_acceleration("exact", CPU) == (Acceleration(), [])
    assert ZeroIG(mode="faithful", device="cpu").acceleration == Acceleration()


def test_convolution_precision_sets_tf32_on_cuda_only_and_restores_it():
    saved = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with convolution_precision(Acceleration(tf32=False), CPU):
            assert torch.backends.cudnn.allow_tf32
        with convolution_precision(Acceleration(tf32=False), torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def test_unavailable_options_are_dropped_with_a_reason(monkeypatch):
    monkeypatch.setattr(acceleration, "cpu_has_bf16_kernels", lambda: True)
    options, notes = resolve_acceleration("max", CPU)
    assert options == Acceleration(channels_last=True, network_dtype=torch.bfloat16)
    assert any("torch.compile" in note for note in notes) and any("CUDA graphs" in note for note in notes)
    assert not any("bf16" in note for note in notes)
    with pytest.raises(ValueError, match="unknown acceleration"):
        resolve_acceleration("fastest", CPU)


def test_max_is_plain_float32_on_a_cpu_without_bf16_kernels(monkeypatch):
    monkeypatch.setattr(acceleration, "cpu_has_bf16_kernels", lambda: False)
    options, notes = resolve_acceleration("max", CPU)
    assert options == Acceleration()  # channels-last goes too: it is the slower float32 layout there
    assert any("no native bf16" in note for note in notes)
    explicit = Acceleration(network_dtype=torch.bfloat16)
    assert resolve_acceleration(explicit, CPU) == (explicit, [])  # asked for by name: slow but honoured


@pytest.mark.parametrize(
    "device_type, capability, cpu_kernels, expected",
    [
        ("cuda", (7, 5), None, "capability 8.0"),
        ("cuda", (9, 0), False, None),
        ("cpu", None, False, "no native bf16"),
        ("cpu", None, True, None),
    ],
)
def test_bf16_availability(device_type, capability, cpu_kernels, expected):
    reason = bf16_unavailable_reason(device_type, capability, cpu_kernels)
    assert (reason is None) if expected is None else (expected in reason)


@pytest.mark.parametrize(
    "device_type, platform, capability, triton, expected",
    [
        ("cpu", "linux", None, True, "CUDA only"),
        ("cuda", "win32", (9, 0), True, "Windows"),
        ("cuda", "linux", (9, 0), False, "triton"),
        ("cuda", "linux", (6, 1), True, "capability 7.0"),
        ("cuda", "linux", (9, 0), True, None),
    ],
)
def test_compile_availability(device_type, platform, capability, triton, expected):
    reason = compile_unavailable_reason(device_type, platform, capability, triton)
    assert (reason is None) if expected is None else (expected in reason)


def test_cuda_graphs_need_cuda():
    assert "CUDA device" in cuda_graph_unavailable_reason("cpu")
    assert cuda_graph_unavailable_reason("cuda") is None


def test_failed_compile_falls_back_to_the_exact_eager_step(dark, monkeypatch):
    plain = ZeroIG(mode="faithful", device="cpu")
    expected = plain.fit(dark, 2).losses

    def broken_compile(loss, **_):
        def compiled(net, image, brightness):
            loss(net, image, brightness)  # runs (updating BatchNorm statistics) and then fails, like a late compile error
            raise RuntimeError("no compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = ZeroIG(mode="faithful", device="cpu")
    model.acceleration = Acceleration(compile=True)  # as resolved on a machine that claims support
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        losses = model.fit(dark, 2).losses
    assert losses == expected
    assert not model.acceleration.compile and "no compiler" in model.acceleration_notes[-1]
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_channels_last_computes_the_same_fit(dark):
    expected = ZeroIG(mode="faithful", device="cpu").fit(dark, 3).losses
    model = ZeroIG(mode="faithful", device="cpu", acceleration=Acceleration(channels_last=True))
    assert model.net.enhance.in_conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(model.fit(dark, 3).losses, expected, rtol=1e-4)


def test_bf16_networks_run_in_bf16_and_hand_back_float32(dark):
    wrapped = AutocastNetworks(published_init(2), torch.bfloat16)
    out = wrapped.denoise_1(torch.rand(1, 3, 8, 8))
    assert out.dtype == torch.float32
    expected = ZeroIG(mode="faithful", device="cpu").fit(dark, 2).losses
    model = ZeroIG(mode="faithful", device="cpu", acceleration=Acceleration(network_dtype=torch.bfloat16))
    np.testing.assert_allclose(model.fit(dark, 2).losses, expected, rtol=0.05)


@pytest.mark.parametrize("acceleration, hinted", [("off", False), (Acceleration(network_dtype=torch.bfloat16), True)])
def test_a_diverged_fit_points_reduced_precision_users_to_exact_float32(dark, acceleration, hinted):
    model = ZeroIG(mode="faithful", device="cpu", acceleration=acceleration)
    loss = model._loss
    model._loss = lambda net, view, brightness: loss(net, view, brightness) * float("nan")
    with pytest.raises(FloatingPointError, match="diverged") as raised:
        model.fit(dark, 1)
    assert ("acceleration 'exact'" in str(raised.value)) == hinted


def test_crop_mode_fits_on_native_crops_and_infers_the_whole_image():
    recipe = get_recipe("crop")
    assert recipe.crop_size and recipe.crops_per_step > 1 and recipe.loss is get_recipe("faithful").loss
    assert recipe.inference_statistics == "image"
    image = np.random.default_rng(1).uniform(0, 0.2, (40, 52, 3)).astype(np.float32)
    model = ZeroIG(mode="crop", device="cpu")
    model.recipe = replace(recipe, crop_size=16, crops_per_step=3)  # small crops for a tiny test image
    tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    views = model._training_view(tensor)
    assert views.shape == (3, 3, 16, 16)
    windows = tensor.unfold(2, 16, 1).unfold(3, 16, 1)  # (1, 3, 25, 37, 16, 16): every 16x16 window
    for view in views:
        assert (windows == view[None, :, None, None]).flatten(4).all(-1).all(1).any()
    report = model.fit(image, 3)
    assert report.steps_done == 3 and all(np.isfinite(report.losses))
    assert model.infer(image).denoise.shape == image.shape


@needs_cuda
@pytest.mark.parametrize("mode", ["faithful", "improved"])
@pytest.mark.parametrize("options", [Acceleration(cuda_graph=True), "exact"])
def test_graphed_steps_compute_what_eager_steps_compute(dark, mode, options):
    """In full float32 (TF32 convolutions differ from run to run by ~1e-4 with cuDNN's choice of
    algorithm, graphed or not; measured on an H100, BENCHMARKS.md)."""
    expected = ZeroIG(mode=mode, device="cuda", acceleration="off").fit(dark, 8).losses
    model = ZeroIG(mode=mode, device="cuda", acceleration=options)
    losses = model.fit(dark, 5).losses + model.fit(dark, 3).losses  # capture, replays, then a second fit
    assert model.acceleration.cuda_graph, model.acceleration_notes
    np.testing.assert_allclose(losses, expected, rtol=2e-5)


@needs_cuda
def test_auto_on_cuda_graphs_the_step_with_tf32_convolutions(dark):
    model = ZeroIG(mode="faithful", device="cuda")
    assert model.acceleration == Acceleration(channels_last=True, cuda_graph=True, tf32=True)
    expected = ZeroIG(mode="faithful", device="cuda", acceleration="off").fit(dark, 8).losses
    np.testing.assert_allclose(model.fit(dark, 8).losses, expected, rtol=2e-2)


@needs_cuda
def test_compiled_step_computes_what_the_eager_step_computes(dark):
    expected = ZeroIG(mode="faithful", device="cuda", acceleration="off").fit(dark, 4).losses
    model = ZeroIG(mode="faithful", device="cuda", acceleration=Acceleration(compile=True))
    np.testing.assert_allclose(model.fit(dark, 4).losses, expected, rtol=1e-4)


@needs_cuda
def test_the_risk_score_is_exact_float32_under_tf32_acceleration(dark):
    """TF32's rounding would swamp the risk's finite difference (about 2 % of the score, emulated
    on a CPU; BENCHMARKS.md): a TF32 engine scores as an exact one does."""
    model = ZeroIG(device="cuda", brightness="headroom")
    assert model.acceleration.tf32
    model.fit(dark, 20)
    exact = ZeroIG(device="cuda", brightness="headroom", acceleration="exact")
    exact.net.load_state_dict(model._current_net().state_dict())
    assert model.selection_score(dark, "risk") == pytest.approx(exact.selection_score(dark, "risk"), rel=1e-3)
