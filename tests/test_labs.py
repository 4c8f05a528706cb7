"""Labs: the lecture 5 init experiment, activations and preprocessing, checked against closed forms and numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from nbdiag.environment import in_kernel
from nbdiag.labs import (
    activation_curves,
    activation_stats,
    activations_lab,
    correlated_cloud,
    covariance,
    deep_net_activations,
    digits_images,
    image_preprocessing,
    init_lab,
    preprocessing_lab,
    preprocessing_steps,
    split_leakage,
)
from nbdiag.labs.functions import ACTIVATIONS
from nbdiag.labs.schemes import fan_in, init_weight_, scheme_std


def phi_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def mean_square(df) -> np.ndarray:
    return (df["std"] ** 2 + df["mean"] ** 2).to_numpy()


# ---- init lab: the lecture's findings (10 layers x 500 units, 1000 unit-Gaussian samples, as in seeds/004) ----


def test_tanh_small_init_collapses_by_the_linear_factor():
    df = deep_net_activations(activation="tanh", init="small")
    # Near 0 tanh is the identity, so each layer multiplies the std by 0.01 * sqrt(500) = 0.224; allow 5% for
    # sampling and the tiny tanh curvature in layer 1 (input std 1 * 0.224 is still nearly linear).
    ratios = df["std"].to_numpy()[1:] / df["std"].to_numpy()[:-1]
    np.testing.assert_allclose(ratios, 0.01 * math.sqrt(500), rtol=0.05)
    assert df["std"].iloc[-1] < 1e-5  # "collapses toward 0"
    # Backward: the gradient reaching layer 1 shrinks by the same factor per layer (vanishing gradients).
    assert df["grad_std"].iloc[0] < 1e-4 * df["grad_std"].iloc[-1]


def test_tanh_large_init_saturates_as_the_gaussian_tail_predicts():
    df = deep_net_activations(activation="tanh", init="large")
    # z = h @ W.T with W ~ N(0, 1): z ~ N(0, 500 * E[h^2]); saturated means |tanh z| >= 0.98, |z| >= atanh(0.98).
    threshold = math.atanh(0.98)
    input_ms = np.concatenate([[1.0], mean_square(df)[:-1]])
    expected = [2 * (1 - phi_cdf(threshold / math.sqrt(500 * ms))) for ms in input_ms]
    np.testing.assert_allclose(df["saturated"], expected, atol=0.01)  # 0.01: binomial noise on 5e5 outputs is 4e-4
    assert (df["saturated"] > 0.85).all()
    assert (df["std"] > 0.95).all()  # the histograms pile up at -1 and +1


def test_tanh_xavier_stays_spread():
    df = deep_net_activations(activation="tanh", init="xavier")
    # Lecture: "nicely distributed" - no collapse (std stays within an order of magnitude of layer 1, the slow
    # decay is tanh's compression), and almost nothing saturated (< 5% in layer 1, where z ~ N(0, 1)).
    assert (df["std"] > 0.2).all() and (df["std"] < 0.7).all()
    assert df["std"].iloc[-1] > 0.3 * df["std"].iloc[0]
    assert (df["saturated"] < 0.05).all()
    assert df["grad_std"].iloc[0] > 0.1 * df["grad_std"].iloc[-1]


def test_relu_xavier_halves_the_second_moment_per_layer():
    df = deep_net_activations(activation="relu", init="xavier")
    # Var(w) = 1/n keeps E[z^2] = E[h^2]; ReLU keeps half of a symmetric z's second moment: E[h^2] halves.
    ratios = mean_square(df)[1:] / mean_square(df)[:-1]
    np.testing.assert_allclose(ratios, 0.5, atol=0.08)  # 0.08: ~15% sampling spread of a 500-unit layer
    assert mean_square(df)[-1] < 0.01 * mean_square(df)[0]


def test_relu_he_holds_its_scale():
    df = deep_net_activations(activation="relu", init="he")
    ratios = mean_square(df)[1:] / mean_square(df)[:-1]
    np.testing.assert_allclose(ratios, 1.0, atol=0.15)
    assert 0.7 < df["std"].iloc[-1] / df["std"].iloc[0] < 1.3
    # First layer: h = relu(z), z ~ N(0, 2) -> E[h^2] = 1 exactly in expectation.
    assert mean_square(df)[0] == pytest.approx(1.0, rel=0.05)


def test_batch_norm_rescues_a_large_init():
    df = deep_net_activations(activation="tanh", init="large", batch_norm=True, depth=6)
    # BN makes every pre-activation N(0, 1) over the batch: std(tanh(N(0, 1))) by numerical integration.
    expected = activation_stats(0.0, 1.0).loc["tanh", "out_std"]
    np.testing.assert_allclose(df["std"], expected, atol=0.01)


@pytest.mark.parametrize(
    ("scheme", "formula"), [("xavier", lambda n: 1 / math.sqrt(n)), ("he", lambda n: math.sqrt(2 / n))]
)
def test_weight_std_matches_the_formula(scheme, formula):
    df = deep_net_activations(activation="relu", init=scheme, width=400, depth=3, n_samples=50)
    np.testing.assert_allclose(df["weight_std"], formula(400), rtol=0.02)  # std of 160k draws: 0.2% noise
    assert df.attrs["expected_weight_std"] == pytest.approx(formula(400))
    conv = torch.empty(64, 16, 3, 3)
    init_weight_(conv, scheme, torch.Generator().manual_seed(0))
    assert fan_in(conv) == 16 * 9
    assert conv.std().item() == pytest.approx(formula(16 * 9), rel=0.03)


def test_custom_std_and_orthogonal():
    custom = deep_net_activations(std=0.05, depth=2, width=300, n_samples=10)
    np.testing.assert_allclose(custom["weight_std"], 0.05, rtol=0.02)
    assert custom.attrs["init"] == "N(0, 0.05^2)"
    assert scheme_std("0.05", 10) == 0.05
    weight = init_weight_(torch.empty(50, 50), "orthogonal", torch.Generator().manual_seed(0))
    torch.testing.assert_close(weight @ weight.T, torch.eye(50), atol=1e-5, rtol=0)


def test_numbers_match_a_manual_forward_and_backward():
    df = deep_net_activations(depth=2, width=16, n_samples=32, activation="gelu", init="he", seed=3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 16, generator=g)
    w1, w2 = (torch.empty(16, 16).normal_(0, math.sqrt(2 / 16), generator=g).requires_grad_() for _ in range(2))
    h1 = torch.nn.functional.gelu(x @ w1.T)
    h1.retain_grad()
    h2 = torch.nn.functional.gelu(h1 @ w2.T)
    h2.retain_grad()
    (h2 * torch.randn(32, 16, generator=g)).sum().backward()
    for row, h, w in ((0, h1, w1), (1, h2, w2)):
        assert df["mean"][row] == pytest.approx(h.mean().item(), abs=1e-6)
        assert df["std"][row] == pytest.approx(h.std(correction=0).item(), rel=1e-5)
        assert df["grad_std"][row] == pytest.approx(h.grad.std(correction=0).item(), rel=1e-5)
        assert df["weight_grad_std"][row] == pytest.approx(w.grad.std(correction=0).item(), rel=1e-5)


def test_histograms_dead_units_and_edges():
    df = deep_net_activations(activation="tanh", init="large", depth=3, width=100, n_samples=200)
    edges = df.attrs["edges"]
    # tanh's range [-1, 1] padded by 4.5 bins of 0.05: the pile-up at +-1 sits inside the slot, not on its edge,
    # in one bin centred on each bound.
    assert edges[0] == pytest.approx(-1.225) and edges[-1] == pytest.approx(1.225) and np.allclose(np.diff(edges), 0.05)
    centres = 0.5 * (edges[:-1] + edges[1:])
    near_bound = np.abs(np.abs(centres) - 1) < 1e-9  # the bins centred on -1 and on +1
    for counts in df["hist"]:
        assert counts.sum() == 100 * 200
        assert counts[np.abs(centres) > 1.01].sum() == 0  # the padding past the bounds stays empty
        assert counts[near_bound].sum() / counts.sum() > 0.5  # piled up at -1 and +1
    relu = deep_net_activations(activation="relu", init="he", depth=2, width=100, n_samples=200)
    # ReLU: about half the outputs are exactly 0, but a unit is dead only if it is 0 for all 200 samples.
    assert relu["zero"].iloc[0] == pytest.approx(0.5, abs=0.02)
    assert relu["dead"].iloc[0] == 0.0


def test_flat_share_is_the_share_of_local_gradients_near_zero():
    """Lecture 5's "local gradients vanish" (tanh, N(0, 1) weights) as a number: the share of (sample, unit)
    outputs with 1 - tanh(z)^2 < 0.01, recomputed in numpy from the same seed; beside it the backpropagated gradient,
    which the few unsaturated units still pass through the large weights (it grows toward the input here)."""
    df = deep_net_activations(activation="tanh", init="large", depth=3, width=200, n_samples=300, seed=5)
    g = torch.Generator().manual_seed(5)
    h = torch.randn(300, 200, generator=g).numpy().astype(np.float64)
    weights = [torch.empty(200, 200).normal_(0, 1, generator=g).numpy().astype(np.float64) for _ in range(3)]
    for row, weight in enumerate(weights):
        z = h @ weight.T
        local = 1 - np.tanh(z) ** 2
        assert df["flat"][row] == pytest.approx(np.mean(local < 0.01), abs=2e-3)  # float32 vs float64 near 0.01
        h = np.tanh(z)
    assert (df["flat"] > 0.8).all()  # most local gradients are ~0 ...
    assert df["grad_std"].iloc[0] > df["grad_std"].iloc[-1]  # ... yet the backpropagated gradient grows toward layer 1
    xavier = deep_net_activations(activation="tanh", init="xavier", depth=3, width=200, n_samples=300)
    assert (xavier["flat"] < 0.01).all()


def test_bad_arguments_raise_helpful_errors():
    with pytest.raises(ValueError, match="expected one of"):
        deep_net_activations(activation="swish")
    with pytest.raises(ValueError, match="try init='custom', std"):
        deep_net_activations(init="custom")
    with pytest.raises(ValueError, match="positive integer"):
        deep_net_activations(depth=0)


def test_init_lab_widget_recomputes_on_control_change(tmp_path):
    assert not in_kernel()
    lab = init_lab(width=100, n_samples=200)
    assert lab._view is None  # headless: nothing displayed or built
    widget = lab.widget
    assert type(widget).__name__ == "VBox"
    lab.view.controls["activation"].value = "relu"
    expected = deep_net_activations(width=100, n_samples=200, activation="relu", init="xavier")
    np.testing.assert_allclose(lab.view.figure_widget.data[2].y, expected["std"])
    lab.view.controls["depth"].value = 4
    assert len(lab.view.figure_widget.data[1].x) == 4
    flat = next(t for t in lab.view.figure_widget.data if t.name == "share of f'(z) ~ 0")  # beside the gradients
    np.testing.assert_allclose(flat.y, lab.data["flat"])
    assert flat.yaxis != lab.view.figure_widget.data[3].yaxis  # its own 0-100% axis, the std lines on a log one
    assert lab.view.controls["std"].layout.display == "none"  # the custom-std slider only for init="custom"
    lab.view.controls["init"].value = "custom"
    assert lab.view.controls["std"].layout.display is None
    assert lab.data.attrs["init"] == "N(0, 0.05^2)"
    assert lab.savefig(tmp_path / "init.png").read_bytes()[:4] == b"\x89PNG"
    assert "init lab" in repr(lab)


# ---- activations lab --------------------------------------------------------------------------------------------


def test_derivatives_match_autograd():
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    x = x[x.abs() > 1e-3]  # skip the kink at 0
    for act in ACTIVATIONS.values():
        xg = x.clone().requires_grad_()
        (autograd,) = torch.autograd.grad(act.fn(xg).sum(), xg)
        torch.testing.assert_close(act.grad(x), autograd, msg=act.name)
    s = torch.sigmoid(x)
    torch.testing.assert_close(ACTIVATIONS["sigmoid"].grad(x), s * (1 - s))
    curves = activation_curves(np.array([-1.0, 2.0]), names=("relu",))
    assert curves["value"].tolist() == [0.0, 2.0] and curves["grad"].tolist() == [0.0, 1.0]


def test_activation_stats_closed_forms():
    stats = activation_stats(0.0, 1.0)
    # Quadrature step 1e-3: a jump in the integrand (ReLU's at 0) costs at most ~4e-4.
    assert stats.loc["relu", "zero_frac"] == pytest.approx(0.5, abs=1e-3)  # zero outputs, not dead units
    assert stats.loc["relu", "mean_grad"] == pytest.approx(0.5, abs=1e-3)
    assert stats.loc["relu", "out_mean"] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-4)
    assert stats.loc["leaky_relu", "zero_frac"] == 0.0
    assert stats.loc["selu", "out_std"] == pytest.approx(1.0, abs=1e-3)  # self-normalizing
    mean, std = 1.5, 0.7
    shifted = activation_stats(mean, std)
    assert shifted.loc["relu", "zero_frac"] == pytest.approx(phi_cdf(-mean / std), abs=1e-3)
    threshold = math.atanh(0.98)
    saturated = phi_cdf((-threshold - mean) / std) + 1 - phi_cdf((threshold - mean) / std)
    assert shifted.loc["tanh", "saturated"] == pytest.approx(saturated, abs=1e-3)


def test_tanh_mean_gradient_matches_scipy_quad():
    for mean, std in ((0.0, 1.0), (2.0, 0.5), (-1.0, 3.0)):
        density = lambda x, m=mean, s=std: math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
        expected, _ = integrate.quad(lambda x, d=density: (1 - math.tanh(x) ** 2) * d(x), -np.inf, np.inf)
        assert activation_stats(mean, std).loc["tanh", "mean_grad"] == pytest.approx(expected, abs=1e-6)


def test_activations_lab_sliders_update_the_bars(tmp_path):
    lab = activations_lab()
    lab.widget  # noqa: B018 - build it
    lab.view.controls["mean"].value = 2.0
    bars = {trace.name: trace for trace in lab.view.figure_widget.data if trace.type == "bar"}
    np.testing.assert_allclose(bars["mean_grad"].y, activation_stats(2.0, 1.0)["mean_grad"])
    assert lab.view.figure_widget.data[0].x[np.argmax(lab.view.figure_widget.data[0].y)] == pytest.approx(2.0, abs=0.03)
    assert lab.savefig(tmp_path / "act.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="positive"):
        activation_stats(0.0, 0.0)


# ---- preprocessing lab ------------------------------------------------------------------------------------------


def test_preprocessing_stages_against_numpy():
    x = correlated_cloud(n=400, correlation=0.7)
    steps = preprocessing_steps(x)
    cov = steps.covariances()
    np.testing.assert_allclose(steps.stages["zero-centered"].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(steps.stages["normalized"].std(axis=0), 1, rtol=1e-12)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    np.testing.assert_allclose(cov["decorrelated"], np.diag(eigenvalues), atol=1e-10)
    np.testing.assert_allclose(cov["whitened"], np.eye(2), atol=1e-6)
    np.testing.assert_allclose(cov["original"], np.cov(x, rowvar=False, bias=True))
    # The normalized covariance is the correlation matrix.
    np.testing.assert_allclose(cov["normalized"], np.corrcoef(x, rowvar=False), atol=1e-12)


def test_test_split_uses_training_statistics_and_higher_dimensions():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)), rng.normal(size=(50, 5)) + 3
    steps = preprocessing_steps(train, test)
    np.testing.assert_allclose(steps.test_stages["normalized"], (test - train.mean(0)) / train.std(0))
    np.testing.assert_allclose(steps.covariances()["whitened"], np.eye(5), atol=1e-6)
    leaked = preprocessing_steps(train, test, fit_on="all")
    np.testing.assert_allclose(leaked.mean, np.concatenate([train, test]).mean(0))
    with pytest.raises(ValueError, match="fit_on"):
        preprocessing_steps(train, test, fit_on="test")


def test_split_leakage_matches_the_mixture_mean():
    train = correlated_cloud(n=300)
    test = correlated_cloud(n=100, seed=1, shift=(2.0, 0.0))
    table = split_leakage(train, test)
    assert table.loc["train only", "train_mean"] == pytest.approx(0, abs=1e-12)
    assert table.loc["train only", "train_std"] == pytest.approx(1)
    # Fitting on all data moves the mean by n_test / n_all of the test-train gap (in train-std units).
    gap = np.abs(test.mean(0) - train.mean(0)) / train.std(0) * 100 / 400
    assert table.loc["all data", "mean_shift"] == pytest.approx(gap.mean())
    # ...which hides part of the test split's shift.
    assert table.loc["all data", "test_mean"] < table.loc["train only", "test_mean"]


def test_image_preprocessing_per_channel():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(20, 6, 5, 3)) * np.array([1.0, 0.5, 0.2])  # (N, H, W, C)
    out = image_preprocessing(images, channel_axis=3)
    chw = np.moveaxis(images, 3, 1)
    np.testing.assert_allclose(out["mean_image"], chw.mean(0))
    np.testing.assert_allclose(out["channel_mean"], chw.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(out["channel_standardized"].mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(out["channel_standardized"].std(axis=(0, 2, 3)), 1)
    np.testing.assert_allclose(out["minus_mean_image"].mean(0), 0, atol=1e-10)
    digits, labels = digits_images()
    assert digits.shape == (1797, 8, 8) and labels.shape == (1797,)
    with pytest.raises(ValueError, match="expected"):
        digits_images("cifar")


def test_preprocessing_lab_widget_follows_the_controls(tmp_path):
    lab = preprocessing_lab()
    lab.widget  # noqa: B018 - build it
    lab.view.controls["fit_on"].value = "all"
    lab.view.controls["correlation"].value = 0.3
    expected = preprocessing_steps(
        correlated_cloud(correlation=0.3),
        correlated_cloud(n=200, correlation=0.3, seed=1, shift=(lab.test_shift, 0.0)),
        fit_on="all",
    )
    heat = lab.view.figure_widget.data[3 * 2 + 2]  # the normalized stage's covariance
    np.testing.assert_allclose(np.asarray(heat.z), covariance(expected.stages["normalized"]))
    np.testing.assert_allclose(lab.view.figure_widget.data[3 * 4 + 1].x, expected.test_stages["whitened"][:, 0])
    assert "all" in lab.view.table.value
    assert lab.savefig(tmp_path / "pre.png").read_bytes()[:4] == b"\x89PNG"


def test_preprocessing_lab_shares_its_scales_so_the_lesson_shows_without_numbers():
    """Issue 20: every stage on one square around 0 with equal aspect (zero-centering moves the cloud, whitening
    rounds it), one colour scale for all covariance matrices, one grey scale for all images."""
    lab = preprocessing_lab()
    lab.widget  # noqa: B018 - build it
    layout, data = lab.view.figure_widget.layout, lab.view.figure_widget.data
    stages = len(lab.stages)
    ranges = {tuple(layout[f"{axis}axis{'' if k == 1 else k}"].range) for k in range(1, stages + 1) for axis in "xy"}
    (limit,) = {high for _, high in ranges}
    assert len(ranges) == 1 and limit >= max(np.abs(data[i].x).max() for i in range(0, 3 * stages, 3))
    assert all(layout[f"yaxis{'' if k == 1 else k}"].scaleanchor == f"x{'' if k == 1 else k}" for k in range(1, 6))
    heats = data[2::3]
    largest = max(np.abs(np.asarray(h.z)).max() for h in heats)
    assert {(h.zmin, h.zmax) for h in heats} == {(-largest, largest)}
    images = lab.view.image_widget.data
    assert len({(image.zmin, image.zmax) for image in images}) == 1
    assert images[0].zmin == min(np.min(image.z) for image in images)


def test_activations_lab_colours_are_distinct_and_bars_have_their_own_legend():
    from nbdiag.labs.activations_view import BAR_COLOURS, LINE_COLOURS

    lab = activations_lab()
    lab.widget  # noqa: B018 - build it
    figure = lab.view.figure_widget
    lines = [t for t in figure.data if t.type == "scatter" and t.name != "input density" and t.showlegend is not False]
    bars = [t for t in figure.data if t.type == "bar"]
    line_colours = [t.line.color for t in lines]
    assert len(set(line_colours)) == len(line_colours)  # relu and leaky_relu no longer near-identical greens
    assert not set(line_colours) & {t.marker.color for t in bars}  # "mean_grad" and "zero_frac" apart from the lines
    assert {t.legend for t in bars} == {"legend2"} and all(t.legend in (None, "legend") for t in lines)
    assert len(set(BAR_COLOURS.values())) == len(BAR_COLOURS) and len(LINE_COLOURS) >= len(lines)
    assert figure.layout.legend2.y < 0 and figure.layout.legend2.yanchor == "top"  # below the bars, not over them


def test_activations_lab_statistics_title_names_the_input_it_was_computed_for():
    """Issue 20: the bar panel's title read "N(mean, std^2)" literally; it names the slider values and follows them."""
    lab = activations_lab(mean=1.0, std=0.5)
    lab.widget  # noqa: B018 - build it
    assert lab.view.figure_widget.layout.annotations[2].text == "for x ~ N(1, 0.5²)"
    lab.view.controls["mean"].value = -2.0
    assert lab.view.figure_widget.layout.annotations[2].text == "for x ~ N(-2, 0.5²)"


def test_init_lab_slots_read_as_slots_and_the_share_axis_has_its_own_ticks():
    """Issue 20 (seen in the browser): tanh's saturation spikes at a slot's edges read as dividers between layers,
    and the right axis took the log axis's synced ticks (5%, 34%, 64%, 93%)."""
    from nbdiag.labs.init_view import SHARE_TICKS, SLOT

    lab = init_lab(activation="tanh", init="large", depth=5, display=False)
    lab.widget  # noqa: B018 - build it
    figure = lab.view.figure_widget
    assert [(band.x0, band.x1) for band in figure.layout.shapes] == [(k - SLOT / 2, k + SLOT / 2) for k in (1, 3, 5)]
    assert all(band.layer == "below" and band.yref == "y domain" for band in figure.layout.shapes)
    share = figure.layout.yaxis4
    assert share.overlaying == "y3" and share.tickmode == "array" and list(share.tickvals) == SHARE_TICKS
    lab.view.controls["depth"].value = 2
    assert [(band.x0, band.x1) for band in figure.layout.shapes] == [(1 - SLOT / 2, 1 + SLOT / 2)]
