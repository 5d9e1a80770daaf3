"""The fitting engine: progress, cancel, warm start, optimiser state, tiling, devices, layouts."""
from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zeroig_plugin import CheckpointError, DeviceError, InputError, OutputError, ZeroIG, resolve_device, sizing
from zeroig_plugin.engine import FIT_CROPS_PER_STEP
from zeroig_plugin.networks import published_init
from zeroig_plugin.objective import first_denoised, image_statistics, infer
from zeroig_plugin.recipes import get_recipe


@pytest.fixture(scope="module")
def dark() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((24, 20, 3)) * 0.15).astype(np.float32)


def test_progress_reports_every_step_and_losses_every_n(dark):
    calls = []
    report = ZeroIG(mode="faithful", device="cpu").fit(dark, 4, progress=lambda *a: calls.append(a), loss_every=2)
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[0][2] is None and calls[1][2] == pytest.approx(report.losses[1])
    assert report.steps_done == 4 and not report.cancelled and len(report.losses) == 4


def test_cancel_stops_before_the_next_step_and_keeps_what_ran(dark):
    model = ZeroIG(mode="faithful", device="cpu")
    done = []
    report = model.fit(dark, 50, progress=lambda step, *_: done.append(step), should_cancel=lambda: len(done) >= 2)
    assert report.cancelled and report.steps_done == 2 and model.steps_done == 2


def test_two_fits_in_a_row_continue_exactly_like_one_long_fit(dark):
    one_go = ZeroIG(mode="faithful", device="cpu").fit(dark, 4).losses
    warm = ZeroIG(mode="faithful", device="cpu")
    in_two = warm.fit(dark, 2).losses + warm.fit(dark, 2).losses
    assert np.allclose(in_two, one_go, rtol=1e-6)


def test_weights_and_optimizer_state_resume_in_a_new_object(dark):
    first = ZeroIG(mode="faithful", device="cpu")
    first.fit(dark, 2)
    resumed = ZeroIG(mode="faithful", device="cpu", weights=first.state_dict(), optimizer_state=first.optimizer_state_dict())
    assert np.allclose(resumed.fit(dark, 2).losses, first.fit(dark, 2).losses, rtol=1e-6)


def test_reset_returns_to_the_starting_weights(dark):
    model = ZeroIG(mode="faithful", device="cpu")
    before = model.infer(dark).denoise
    model.fit(dark, 2)
    model.reset()
    assert np.array_equal(model.infer(dark).denoise, before) and model.steps_done == 0
    model.fit(dark, 1)
    from_checkpoint = ZeroIG(mode="faithful", device="cpu", weights=model.state_dict())
    checkpoint_output = from_checkpoint.infer(dark).denoise
    from_checkpoint.fit(dark, 2)
    from_checkpoint.reset()
    assert np.array_equal(from_checkpoint.infer(dark).denoise, checkpoint_output)
    from_checkpoint.reset(seed=2)
    assert np.array_equal(from_checkpoint.infer(dark).denoise, before)


def test_tiled_inference_equals_whole_image_inference():
    rng = np.random.default_rng(1)
    image = (rng.random((70, 90, 3)) * 0.2).astype(np.float32)
    model = ZeroIG(mode="faithful", device="cpu")
    whole, tiled = model.infer(image), model.infer(image, tile=32)
    for name, output in whole._asdict().items():
        assert np.abs(output - getattr(tiled, name)).max() < 1e-5, name


@pytest.mark.parametrize("shape", [(12, 9), (12, 9, 1), (12, 9, 3), (1, 1, 3)])
def test_outputs_keep_the_input_layout(shape):
    image = np.full(shape, 0.05, np.float32)
    model = ZeroIG(mode="faithful", device="cpu")
    model.fit(image, 1)
    outputs = model.infer(image)
    assert all(output.shape == shape and np.isfinite(output).all() for output in outputs)


def test_bad_images_are_rejected_with_a_message():
    model = ZeroIG(mode="faithful", device="cpu")
    with pytest.raises(Exception, match="NaN"):
        model.fit(np.full((8, 8, 3), np.nan, np.float32), 1)
    with pytest.raises(Exception, match="shape"):
        model.infer(np.zeros((8, 8, 5), np.float32))
    with pytest.raises(Exception, match="float"):
        model.infer(np.zeros((8, 8, 3), np.int32))


def test_devices_resolve_or_fail_clearly():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_checkpoint_errors_name_the_file(tmp_path):
    (tmp_path / "notes.pt").write_text("plain text")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        ZeroIG(device="cpu", weights=tmp_path / "notes.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt.*not a ZERO-IG checkpoint"):
        ZeroIG(device="cpu", weights=tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):
        ZeroIG(device="cpu", weights=tmp_path / "missing.pt")


class _WritesAFileWhenUnpickled:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_checkpoint_holding_python_objects_is_refused_and_nothing_in_it_runs(tmp_path):
    ran = tmp_path / "ran"
    state = ZeroIG(device="cpu").state_dict()
    torch.save({**state, "extra": _WritesAFileWhenUnpickled(ran)}, tmp_path / "zip.pt")
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_WritesAFileWhenUnpickled(ran), protocol=4))
    for name in ("zip.pt", "raw.pt"):
        with pytest.raises(CheckpointError, match=f"{name}: holds Python objects besides tensors"):
            ZeroIG(device="cpu", weights=tmp_path / name)
    assert not ran.exists()


def test_checkpoints_that_cannot_be_the_networks_weights_are_refused_by_name(tmp_path):
    state = ZeroIG(device="cpu").state_dict()
    torch.save({**state, "enhance.in_conv.0.weight": torch.tensor(3.0)}, tmp_path / "scalar.pt")
    with pytest.raises(CheckpointError, match="scalar.pt.*enhance.in_conv.0.weight not a convolution's weights"):
        ZeroIG(device="cpu", weights=tmp_path / "scalar.pt")
    diverged = dict(state)
    diverged["denoise_1.conv1.weight"] = torch.full_like(state["denoise_1.conv1.weight"], float("nan"))
    torch.save(diverged, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="nan.pt: holds NaN or infinite weights .*denoise_1.conv1.weight"):
        ZeroIG(device="cpu", weights=tmp_path / "nan.pt")


def test_saving_weights_where_they_cannot_be_written_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="no-such-folder/w.pt: cannot write the weights"):
        ZeroIG(device="cpu").save(tmp_path / "no-such-folder" / "w.pt")
    assert not list(tmp_path.iterdir())


def test_non_default_widths_round_trip_through_a_checkpoint(tmp_path, dark):
    model = ZeroIG(mode="faithful", device="cpu", second_denoiser_width=96)
    model.save(tmp_path / "wide.pt")
    loaded = ZeroIG(mode="faithful", device="cpu", weights=tmp_path / "wide.pt")
    assert loaded.net.denoise_2.conv1.out_channels == 96
    assert np.array_equal(loaded.infer(dark).denoise, model.infer(dark).denoise)


def test_fit_crop_bounds_the_fitted_view_and_infers_the_whole_image():
    rng = np.random.default_rng(3)
    image = (rng.random((64, 80, 3)) * 0.15).astype(np.float32)
    seen = []
    cropped = ZeroIG(mode="faithful", device="cpu", fit_crop=24)
    original_loss = cropped.recipe.loss
    cropped._loss = lambda net, view, brightness: seen.append(tuple(view.shape)) or original_loss(net, view, brightness)
    cropped.fit(image, 2)
    assert seen == [(FIT_CROPS_PER_STEP, 3, 24, 24)] * 2
    assert cropped.infer(image).denoise.shape == (64, 80, 3)
    assert ZeroIG(mode="faithful", device="cpu").recipe.crop_size is None
    crop_mode = get_recipe("crop")
    assert ZeroIG(mode="crop", device="cpu", fit_crop=24).recipe.crops_per_step == crop_mode.crops_per_step


def test_images_too_large_for_a_whole_image_step_are_fitted_on_crops(monkeypatch):
    image = (np.random.default_rng(4).random((40, 44, 3)) * 0.15).astype(np.float32)
    # memory for a whole-image step of 32x32 pixels: two 16x16 crops of 40x44 fit, the whole does not
    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.whole_image_fit_bytes(32, 32, device))
    model = ZeroIG(device="cpu")
    automatic = model.fit(image, 3)
    explicit = ZeroIG(device="cpu", fit_crop=16).fit(image, 3)
    whole = ZeroIG(device="cpu", fit_crop=None).fit(image, 3)
    assert automatic.crop_size == explicit.crop_size == 16 and whole.crop_size is None
    assert automatic.losses == explicit.losses != whole.losses
    assert ZeroIG(device="cpu").fit(image[:30, :30], 1).crop_size is None, "within the memory: whole image"
    assert model.fit(image[:30, :30], 1).crop_size == 16, "a model that switched to crops stays on them"
    assert model.infer(image).denoise.shape == image.shape


def test_a_captured_step_is_released_before_an_inference_that_would_not_fit_beside_it(monkeypatch):
    from types import SimpleNamespace

    image = (np.random.default_rng(4).random((40, 44, 3)) * 0.15).astype(np.float32)
    step = (2, 3, 32, 32)  # a graph captured on two 32x32 crops; its pool is held between steps
    held = sizing.whole_image_fit_bytes(64, 32, torch.device("cpu"))
    memory = held + sizing.inference_bytes(40, 44) / sizing.MEMORY_SHARE["cpu"]  # the pass just fits beside it
    monkeypatch.setattr(sizing, "device_memory", lambda device: memory)
    model = ZeroIG(device="cpu", fit_crop=32)
    model._graph = graph = SimpleNamespace(key=(step,))
    assert sizing.budget_beside(model.device, held) == pytest.approx(sizing.inference_bytes(40, 44))
    model.infer(image, ensemble=1)
    assert model._graph is graph, "room for the pass beside the graph: kept"
    monkeypatch.setattr(sizing, "device_memory", lambda device: memory - 2**20)
    model.infer(image, ensemble=1)
    assert model._graph is None, "no room: released (the next step captures it again)"


def test_the_automatic_crop_is_the_largest_that_fits_the_device_memory(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert sizing.whole_image_fit_bytes(1080, 1920, cuda) >= 12.5 * 2**30, "the H100's measured peak at 1080p"
    assert sizing.whole_image_fit_bytes(400, 600, cpu) >= 1.8 * 2**30, "the CPU's measured peak at 600x400"
    assert sizing.device_memory(cpu) > 0
    memory = 2 * 2**30
    monkeypatch.setattr(sizing, "device_memory", lambda device: memory)
    assert sizing.automatic_fit_crop(200, 300, cpu) is None, "0.5 GiB of 2: whole image"
    side = sizing.automatic_fit_crop(400, 600, cpu)
    assert side % sizing.CROP_MULTIPLE == 0
    budget = sizing.memory_budget(cpu)
    assert budget == sizing.MEMORY_SHARE["cpu"] * memory
    assert sizing.FIT_CROPS_PER_STEP * sizing.whole_image_fit_bytes(side, side, cpu) <= budget
    larger = side + sizing.CROP_MULTIPLE
    assert sizing.FIT_CROPS_PER_STEP * sizing.whole_image_fit_bytes(larger, larger, cpu) > budget
    assert sizing.fit_crop_side(None, True, 400, 600, cpu) == side
    assert sizing.fit_crop_side(None, False, 400, 600, cpu) is None
    assert sizing.fit_crop_side(side, False, side, side - 1, cpu) is None, "no larger than the crops: fitted whole"


def test_inference_is_tiled_only_where_one_pass_would_not_fit_the_memory(monkeypatch):
    cpu, margin = torch.device("cpu"), 16
    assert sizing.inference_bytes(2336, 2336) >= 11.4 * 2**30, "the CPU's measured 2.2 KiB per pixel of a tile window"
    budget = sizing.inference_bytes(1000, 1000)
    monkeypatch.setattr(sizing, "memory_budget", lambda device: budget)
    assert sizing.automatic_tile(1000, 1000, cpu, margin) is None
    tile = sizing.automatic_tile(1000, 1001, cpu, margin)
    buffers = 1000 * 1001 * sizing.WHOLE_IMAGE_BUFFER_BYTES_PER_PIXEL
    assert tile % sizing.TILE_MULTIPLE == 0
    assert buffers + sizing.inference_bytes(tile + 2 * margin, tile + 2 * margin) <= budget
    wider = tile + sizing.TILE_MULTIPLE + 2 * margin
    assert buffers + sizing.inference_bytes(wider, wider) > budget


def test_tiled_inference_on_a_cpu_hands_the_fits_kept_memory_back_once_per_fit(monkeypatch, dark):
    from zeroig_plugin import engine

    released = []
    monkeypatch.setattr(engine, "release_freed_memory", lambda: released.append(True))
    model = ZeroIG(device="cpu")
    model.fit(dark, 1)
    model.infer(dark, ensemble=1)
    assert released == [], "untiled: malloc keeps what the next step or pass reuses"
    model.infer(dark, tile=16, ensemble=1)
    model.infer(dark, tile=16, ensemble=1)
    assert released == [True]
    model.fit(dark, 1)
    model.infer(dark, tile=16, ensemble=1)
    assert released == [True, True]


def test_a_tensor_input_fits_like_the_same_numpy_array(dark):
    from_array = ZeroIG(mode="faithful", device="cpu").fit(dark, 2).losses
    from_tensor = ZeroIG(mode="faithful", device="cpu").fit(torch.from_numpy(dark), 2).losses
    assert from_tensor == from_array
    counts = (dark * 255).round().astype(np.uint8)
    from_bytes = ZeroIG(mode="faithful", device="cpu").fit(torch.from_numpy(counts), 2).losses
    assert from_bytes == ZeroIG(mode="faithful", device="cpu").fit(counts, 2).losses
    with pytest.raises(Exception, match="float"):
        ZeroIG(mode="faithful", device="cpu").fit(torch.zeros(8, 8, 3, dtype=torch.int16), 1)


def _image_statistics_model() -> ZeroIG:
    model = ZeroIG(mode="faithful", device="cpu")
    model.recipe = replace(model.recipe, inference_statistics="image")
    return model


def test_image_statistics_inference_is_the_training_forward_readout(dark):
    model = _image_statistics_model()
    model.fit(dark, 3)
    running = [buffer.clone() for buffer in model.net.buffers()]
    outputs = model.infer(dark)
    assert all(torch.equal(a, b) for a, b in zip(running, model.net.buffers())), "inference must not touch BatchNorm buffers"
    in_training_mode = copy.deepcopy(model.net).train()
    with torch.no_grad():
        expected = infer(in_training_mode, torch.from_numpy(dark).permute(2, 0, 1)[None])
    assert np.abs(outputs.denoise - expected.denoise[0].permute(1, 2, 0).numpy()).max() < 1e-5
    published = ZeroIG(mode="faithful", device="cpu")
    published.fit(dark, 3)
    assert np.abs(published.infer(dark).denoise - outputs.denoise).max() > 1e-3, "running statistics give another readout"


@pytest.mark.parametrize("mode", ["faithful", "improved"])
def test_linear_output_is_the_denoised_image_brought_back_by_its_illumination(mode):
    rng = np.random.default_rng(1)
    scene = np.repeat(np.linspace(0.01, 0.12, 24, dtype=np.float32)[None, :, None], 20, 0).repeat(3, 2)
    noisy = np.clip(scene + rng.normal(0, 0.01, scene.shape), 0, 1).astype(np.float32)
    model = ZeroIG(mode=mode, device="cpu")
    model.fit(noisy, 5)
    outputs = model.infer(noisy, ensemble=1)
    net = model._inference_net().eval()
    tensor = torch.from_numpy(noisy).permute(2, 0, 1)[None]
    with torch.no_grad():
        statistics = image_statistics(net, tensor) if mode == "improved" else None
        illumination = net.enhance(first_denoised(net, tensor), statistics)
        expected = infer(net, tensor, statistics).denoise * illumination
    np.testing.assert_allclose(outputs.linear, expected[0].permute(1, 2, 0).numpy(), atol=1e-6)
    # At the input's intensities (the brightened outputs are several times brighter), and it keeps
    # their order: the ramp's columns stay in order in the linear output.
    assert outputs.linear.mean() == pytest.approx(noisy.mean(), rel=0.35) and outputs.denoise.mean() > 2 * noisy.mean()
    columns = outputs.linear.mean((0, 2))
    assert np.corrcoef(columns, scene[0, :, 0])[0, 1] > 0.95


def test_image_statistics_are_exact_when_tiled():
    rng = np.random.default_rng(1)
    image = (rng.random((70, 90, 3)) * 0.2).astype(np.float32)
    model = _image_statistics_model()
    model.fit(image, 2)
    whole, tiled = model.infer(image), model.infer(image, tile=32)
    for name, output in whole._asdict().items():
        assert np.abs(output - getattr(tiled, name)).max() < 1e-5, name


def test_statistics_can_come_from_another_view_of_the_image(dark):
    model = _image_statistics_model()
    model.fit(dark, 2)
    brighter = np.clip(dark * 3, 0, 1)
    own, borrowed = model.infer(dark), model.infer(dark, statistics_from=brighter)
    assert np.abs(own.denoise - borrowed.denoise).max() > 1e-3
    assert np.array_equal(model.infer(dark, statistics_from=dark).denoise, own.denoise)


def test_late_learning_rate_switches_once_after_the_given_steps(dark):
    constant = ZeroIG(mode="faithful", device="cpu")
    switched = ZeroIG(mode="faithful", device="cpu")
    switched.recipe = replace(switched.recipe, late_learning_rate=1e-5, late_after=2)
    constant.fit(dark, 2)
    switched.fit(dark, 2)
    assert np.array_equal(constant.infer(dark).denoise, switched.infer(dark).denoise), "same rate for the first steps"
    assert switched.optimizer.param_groups[0]["lr"] == 3e-4
    constant.fit(dark, 1)
    switched.fit(dark, 1)  # a later call continues the count
    assert switched.optimizer.param_groups[0]["lr"] == 1e-5
    assert not np.array_equal(constant.infer(dark).denoise, switched.infer(dark).denoise)
    switched.reset()
    switched.fit(dark, 1)
    assert switched.optimizer.param_groups[0]["lr"] == 3e-4, "a reset starts the schedule again"


def _scripted_scores(monkeypatch, scores, domains=None):
    """Replace the pair score's per-pixel map by ``scores`` in turn, each the same at every pixel;
    returns the weights each call scored (and appends the score domain each call asked for to
    ``domains``)."""
    from zeroig_plugin import engine

    scored, remaining = [], iter(scores)

    def score_map(net, image, domain):
        scored.append({key: value.clone() for key, value in net.state_dict().items()})
        if domains is not None:
            domains.append(domain)
        return torch.full_like(image[:, :, ::2, ::2], next(remaining))

    monkeypatch.setattr(engine, "pair_consistency_map", score_map)
    return scored


def test_selection_infers_with_the_best_scoring_weights_seen_on_the_image(dark, monkeypatch):
    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, select_after=2, select_every=2)
    scored = _scripted_scores(monkeypatch, [3.0, 1.0, 2.0, 4.0])
    model.fit(dark, 4)  # scored after steps 2 and 4
    model.fit(dark, 3)  # after step 6, and its last step (7) once more
    assert len(scored) == 4
    kept = model.state_dict()
    assert all(torch.equal(kept[key], scored[1][key]) for key in kept)
    assert not all(torch.equal(kept[key], scored[3][key]) for key in kept)

    _scripted_scores(monkeypatch, [5.0])
    model.fit(np.ascontiguousarray(dark[::-1]), 1)  # another image: its scores start afresh
    assert model._best.score == 5.0


def test_selection_never_keeps_weights_whose_score_is_not_finite(dark, monkeypatch):
    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    scored = _scripted_scores(monkeypatch, [2.0, float("nan")])
    model.fit(dark, 2)
    kept = model.state_dict()
    assert model._best.score == 2.0 and all(torch.equal(kept[key], scored[0][key]) for key in kept)


def test_plateau_gated_late_rate_waits_for_checks_without_a_new_best(dark, monkeypatch):
    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, late_after=1, select_after=1, select_every=1, late_on_plateau=2)
    rates = []
    _scripted_scores(monkeypatch, [5.0, 4.0, 4.5, 3.0, 3.5, 3.6, 9.0])
    model.fit(dark, 7, progress=lambda *_: rates.append(model.optimizer.param_groups[0]["lr"]))
    # scores after steps 1..6: new best, best, worse, best, worse, worse -> plateau after step 6
    assert rates == [3e-4] * 6 + [1e-4]
    model.reset()
    _scripted_scores(monkeypatch, [1.0, 2.0])
    model.fit(dark, 2)
    assert model.optimizer.param_groups[0]["lr"] == 3e-4, "a reset waits for a new plateau"


def test_plateau_gate_falls_back_to_the_fixed_step_without_selection(dark):
    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, late_after=2, late_on_plateau=3, select_after=None)
    model.fit(dark, 3)
    assert model.optimizer.param_groups[0]["lr"] == 1e-4


def test_selection_is_off_for_crop_fits_and_the_published_mode(dark, monkeypatch):
    scored = _scripted_scores(monkeypatch, [1.0] * 10)
    cropped = ZeroIG(device="cpu", fit_crop=16)
    cropped.recipe = replace(cropped.recipe, select_after=1, select_every=1)
    cropped.fit(dark, 3)
    ZeroIG(mode="faithful", device="cpu").fit(dark, 3)
    assert scored == []


def test_checkpoints_are_scored_on_the_centred_window_that_fits_beside_what_the_fit_holds(monkeypatch):
    from types import SimpleNamespace

    from zeroig_plugin import engine

    image = (np.random.default_rng(4).random((40, 44, 3)) * 0.15).astype(np.float32)
    scored_shapes, real_map = [], engine.pair_consistency_map
    monkeypatch.setattr(engine, "pair_consistency_map", lambda net, view, domain: scored_shapes.append(
        tuple(view.shape[-2:])) or real_map(net, view, domain))

    def scored_by(model: ZeroIG) -> list[tuple[int, int]]:
        scored_shapes.clear()
        model.recipe = replace(model.recipe, select_after=1, select_every=1)
        model.fit(image, 2)
        return list(scored_shapes)

    assert scored_by(ZeroIG(device="cpu")) == [(40, 44)] * 2, "within the memory: the whole image"
    # memory for one inference pass of 24x24 pixels, an image fitted whole against the budget
    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.inference_bytes(24, 24))
    assert scored_by(ZeroIG(device="cpu", fit_crop=None)) == [(16, 32)] * 2, "its centre, sides multiples of 16"
    # a captured step holding half of the device's memory leaves half the budget beside it
    monkeypatch.setattr(sizing, "memory_budget", lambda device: sizing.inference_bytes(40, 44))
    monkeypatch.setattr(sizing, "device_memory", lambda device: 2 * sizing.whole_image_fit_bytes(40, 44, device))
    held = ZeroIG(device="cpu", fit_crop=None)
    held._graph = SimpleNamespace(key=((1, 3, 40, 44),))  # a CPU fit never captures, nor drops, one
    assert scored_by(held) == [(16, 44)] * 2, "16x44 of the 40x44 the budget would allow alone"
    held._graph = None
    scored_shapes.clear()
    held.fit(image, 2)
    assert scored_shapes == [(16, 44)] * 2, "every check of one image is scored on the same window"


@pytest.mark.parametrize("variant, domain", [(None, "enhanced"), ("improved+input-score", "input")])
def test_selection_ranks_by_the_recipes_score_domain(dark, monkeypatch, variant, domain):
    from zeroig_plugin.improved import ablation_recipes

    model = ZeroIG(device="cpu")
    recipe = ablation_recipes()[variant] if variant else model.recipe
    model.recipe = replace(recipe, select_after=1, select_every=1)
    asked = []
    _scripted_scores(monkeypatch, [1.0, 2.0], asked)
    model.fit(dark, 2)
    assert asked == [domain, domain]


def test_risk_selection_scores_every_check_with_the_images_noise_variance_and_one_probe(monkeypatch):
    from zeroig_plugin import engine
    from zeroig_plugin.improved import ablation_recipes
    from zeroig_plugin.noise import noise_variance

    gray = (np.random.default_rng(1).random((24, 20)) * 0.15).astype(np.float32)
    model = ZeroIG(device="cpu")
    model.recipe = replace(ablation_recipes()["improved+risk-score"], select_after=1, select_every=1)
    calls, scores = [], iter([2.0, 1.0, 3.0])

    def risk_map(net, image, variance, probe):
        calls.append((variance, probe, {key: value.clone() for key, value in net.state_dict().items()}))
        return torch.full_like(image[:, :1], next(scores)), torch.zeros_like(image[:, :1])

    monkeypatch.setattr(engine, "stein_risk_map", risk_map)
    model.fit(gray, 3)
    image = torch.from_numpy(gray)[None, None].expand(1, 3, -1, -1)
    torch.testing.assert_close(calls[0][0], noise_variance(image))
    assert all(torch.equal(call[1], calls[0][1]) for call in calls), "one probe for every checkpoint of the image"
    assert torch.equal(calls[0][1][:, 1], calls[0][1][:, 0]), "a gray image gets a gray probe"
    kept = model.state_dict()
    assert all(torch.equal(kept[key], calls[1][2][key]) for key in kept)


def test_risk_selection_keeps_the_smoothest_checkpoint_tied_with_the_lowest_risk_until_one_is_clearly_lower(dark, monkeypatch):
    from zeroig_plugin import engine

    model = ZeroIG(device="cpu", select_for="linear")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    # (risk, blockwise spread, divergence) per check: the second risk is 0.01 above the lowest, well
    # within one standard error (about 0.1) of its blockwise difference, and smooths more; the third is clearly lower
    scripted, weights = iter([(1.00, 0.0, 0.3), (1.01, 1.0, 0.1), (0.50, 0.0, 0.2)]), []

    def risk_map(net, image, variance, probe):
        risk, spread, divergence = next(scripted)
        weights.append({key: value.clone() for key, value in net.state_dict().items()})
        blocks = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        pattern = torch.nn.functional.interpolate(blocks, size=image.shape[-2:], mode="nearest")
        return (risk + spread * (pattern - pattern.mean())).expand_as(image).clone(), torch.full_like(image, divergence)

    monkeypatch.setattr(engine, "stein_risk_map", risk_map)
    kept_after = []
    for _ in range(3):
        model.fit(dark, 1)
        kept_after.append(model.state_dict())
    assert model._best.score == pytest.approx(0.5)
    for kept, index in zip(kept_after, [0, 1, 2]):
        assert all(torch.equal(kept[key], weights[index][key]) for key in kept)


def test_pair_score_selection_keeps_the_latest_checkpoint_tied_with_the_lowest_score_until_one_is_clearly_lower(dark, monkeypatch):
    from zeroig_plugin import engine

    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    # (score, blockwise spread) per check: the second is 0.01 above the lowest, well within one
    # standard error (about 0.1) of its blockwise difference; the third is clearly lower
    scripted, weights = iter([(1.00, 0.0), (1.01, 1.0), (0.50, 0.0)]), []

    def score_map(net, image, domain):
        score, spread = next(scripted)
        weights.append({key: value.clone() for key, value in net.state_dict().items()})
        blocks = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        pattern = torch.nn.functional.interpolate(blocks, size=(image.shape[-2] // 2, image.shape[-1] // 2), mode="nearest")
        return (score + spread * (pattern - pattern.mean())).expand(1, 3, -1, -1).clone()

    monkeypatch.setattr(engine, "pair_consistency_map", score_map)
    kept_after = []
    for _ in range(3):
        model.fit(dark, 1)
        kept_after.append(model.state_dict())
    assert model.checkpoint_selection == "enhanced" and model._best.score == pytest.approx(0.5)
    for kept, index in zip(kept_after, [0, 1, 2]):
        assert all(torch.equal(kept[key], weights[index][key]) for key in kept)


def test_pair_score_selection_gives_up_the_latest_checkpoint_only_when_its_drift_is_significant(dark, monkeypatch):
    from zeroig_plugin import engine
    from zeroig_plugin.objective import drift_threshold, risk_blocks

    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    # per check, how many standard errors of its blockwise difference it lies above the first: the
    # second is beyond one standard error but within the drift test's threshold, the third beyond it
    above, weights = iter([None, 1.5, 3.5]), []
    assert 1.5 < drift_threshold(2) and 1.5 < drift_threshold(3) < 3.5

    def score_map(net, image, domain):
        weights.append({key: value.clone() for key, value in net.state_dict().items()})
        blocks = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        pattern = torch.nn.functional.interpolate(blocks, size=(image.shape[-2] // 2, image.shape[-1] // 2), mode="nearest")
        pattern = pattern.expand(1, 3, -1, -1)
        standard_errors = next(above)
        if standard_errors is None:
            return torch.ones_like(pattern)
        difference = risk_blocks(pattern)
        shift = standard_errors * float(difference.std()) / difference.numel() ** 0.5 - float(difference.mean())
        return (1 + shift + pattern).clone()

    monkeypatch.setattr(engine, "pair_consistency_map", score_map)
    kept_after = []
    for _ in range(3):
        model.fit(dark, 1)
        kept_after.append(model.state_dict())
    for kept, index in zip(kept_after, [0, 1, 1]):
        assert all(torch.equal(kept[key], weights[index][key]) for key in kept)


def test_drift_threshold_is_a_five_percent_test_shared_among_the_checks():
    from zeroig_plugin.objective import drift_threshold

    assert [round(drift_threshold(n), 2) for n in (1, 16, 36)] == [1.64, 2.73, 2.99]


def test_risk_selection_never_keeps_weights_whose_risk_is_not_finite(dark, monkeypatch):
    from zeroig_plugin import engine

    model = ZeroIG(device="cpu", select_for="linear")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    risks, weights = iter([2.0, float("nan")]), []

    def risk_map(net, image, variance, probe):
        weights.append({key: value.clone() for key, value in net.state_dict().items()})
        return torch.full_like(image, next(risks)), torch.zeros_like(image)

    monkeypatch.setattr(engine, "stein_risk_map", risk_map)
    model.fit(dark, 2)
    kept = model.state_dict()
    assert model._best.score == 2.0 and len(model._best.checks) == 1
    assert all(torch.equal(kept[key], weights[0][key]) for key in kept)


def test_selecting_for_linear_ranks_checkpoints_by_its_risk_and_other_outputs_keep_the_modes_score(dark, monkeypatch):
    from zeroig_plugin import engine

    model = ZeroIG(device="cpu", select_for="linear")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    risks, pairs = iter([2.0, 1.0]), _scripted_scores(monkeypatch, [1.0] * 4)
    monkeypatch.setattr(engine, "stein_risk_map", lambda _, image, *__: (torch.full_like(image, next(risks)), torch.zeros_like(image)))
    model.fit(dark, 2)
    assert model.checkpoint_selection == "risk" and model._best.score == 1.0 and pairs == []
    for output in (None, "denoise", "enhance"):
        assert ZeroIG(device="cpu", select_for=output).checkpoint_selection == "enhanced"
    assert ZeroIG(mode="faithful", device="cpu", select_for="linear").checkpoint_selection is None
    assert ZeroIG(device="cpu", fit_crop=16, select_for="linear").checkpoint_selection is None  # crop fits do not select
    with pytest.raises(ValueError, match="select_for"):
        ZeroIG(device="cpu", select_for="denoised")


def test_selection_score_scores_the_weights_the_fit_would_infer_with_now(dark, monkeypatch):
    from zeroig_plugin.objective import pair_consistency

    model = ZeroIG(device="cpu")
    model.recipe = replace(model.recipe, select_after=1, select_every=1)
    _scripted_scores(monkeypatch, [1.0, 2.0, 3.0])
    model.fit(dark, 3)  # selection keeps the step-1 weights for inference
    monkeypatch.undo()
    current = published_init(0)
    current.load_state_dict(model._current_net().state_dict())
    image = torch.from_numpy(dark).permute(2, 0, 1)[None]
    assert model.selection_score(dark) == pytest.approx(float(pair_consistency(current.eval(), image)))
    assert model.selection_score(dark, "input") == pytest.approx(float(pair_consistency(current.eval(), image, "input")))
    kept = published_init(0)
    kept.load_state_dict(model.state_dict())
    assert model.selection_score(dark) != pytest.approx(float(pair_consistency(kept.eval(), image)))


def test_pair_consistency_is_the_image_part_of_the_published_pair_term():
    from zeroig_plugin.objective import pair_consistency, training_forward

    net = published_init(5).train()
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.no_grad():
        f = training_forward(net, image)
    expected = F.mse_loss(f.r3[:, :3], f.target_from_h12[:, :3]) + F.mse_loss(f.r4[:, :3], f.target_from_h11[:, :3])
    torch.testing.assert_close(pair_consistency(net.eval(), image), expected, rtol=1e-5, atol=1e-7)


def test_input_domain_pair_consistency_brings_each_denoised_half_back_by_its_illumination():
    from zeroig_plugin.networks import pair_downsample
    from zeroig_plugin.objective import EPS, pair_consistency, training_forward

    net = published_init(5).train()
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.no_grad():
        f = training_forward(net, image)
    l11, l12 = pair_downsample(image + EPS)
    s21, s22 = f.target_from_h11[:, 3:], f.target_from_h12[:, 3:]
    expected = F.mse_loss(f.r3[:, :3] * s21, l12) + F.mse_loss(f.r4[:, :3] * s22, l11)
    torch.testing.assert_close(pair_consistency(net.eval(), image, "input"), expected, rtol=1e-5, atol=1e-9)


def test_input_domain_score_does_not_change_with_the_enhancement_when_the_denoising_does_not():
    """With N2 doing nothing, two nets that enhance differently denoise equally (not at all): the
    input-domain score sees the same raw halves for both; the enhanced-domain score does not."""
    from zeroig_plugin.networks import pair_downsample
    from zeroig_plugin.objective import EPS, pair_consistency

    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1)) * 0.05  # no clipping at 1
    nets = [published_init(seed).eval() for seed in (5, 6)]
    for net in nets:
        with torch.no_grad():
            net.denoise_2.conv3.weight.zero_()
            net.denoise_2.conv3.bias.zero_()
    l11, l12 = pair_downsample(image + EPS)
    raw_noise = 2 * F.mse_loss(l11, l12)
    for net in nets:
        torch.testing.assert_close(pair_consistency(net, image, "input"), raw_noise, rtol=1e-4, atol=1e-9)
    enhanced = [float(pair_consistency(net, image, "enhanced")) for net in nets]
    assert abs(enhanced[0] - enhanced[1]) > 0.01 * max(enhanced)


def test_pair_consistency_rejects_an_unknown_domain():
    from zeroig_plugin.objective import pair_consistency

    with pytest.raises(ValueError, match="score domain"):
        pair_consistency(published_init(5).eval(), torch.rand(1, 3, 8, 8), "output")


@pytest.mark.parametrize("level", [0.0, 7 / 255], ids=["black", "one grey"])
@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_a_flat_picture_comes_out_flat_under_the_global_tone(level, gray):
    image = np.full((24, 32) if gray else (24, 32, 3), level, np.float32)
    model = ZeroIG(device="cpu", average_with_tv=True, finish_with_tv=True)
    model.fit(image, 3)
    outputs = model.infer(image, ensemble=2)
    np.testing.assert_array_equal(outputs.linear, image)
    np.testing.assert_array_equal(outputs.denoise, outputs.enhance)
    assert np.ptp(outputs.denoise) == 0
    assert outputs.denoise.flat[0] == (0 if level == 0 else pytest.approx(0.5, abs=0.01))


def test_an_empty_image_and_a_tile_that_is_no_side_are_named_errors(dark):
    model = ZeroIG(device="cpu")
    for empty in (np.zeros((0, 8, 3), np.float32), np.zeros((8, 0), np.float32)):
        with pytest.raises(InputError, match="the image is empty"):
            model.fit(empty, 1)
        with pytest.raises(InputError, match="the image is empty"):
            model.infer(empty)
    for tile in (0, -64, 64.5):
        with pytest.raises(ValueError, match="tile is a side in pixels"):
            model.infer(dark, tile=tile)
