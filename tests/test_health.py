"""Live health rules on hand-built records: each threshold just inside (no finding) and just outside (finding)."""

from __future__ import annotations

import numpy as np
import pytest

from nbdiag.findings import SEVERITY_COLOURS, Findings, findings_text, make_finding
from nbdiag.health import _one_per_place, activations, evaluate, gradients, loss, updates
from nbdiag.health.window import BASELINE_ENTRIES, WINDOW_ENTRIES
from nbdiag.quantities.stale_grad import MODEL_STATS
from nbdiag.record import Block, NonFinite, Record, StepEntry
from nbdiag.stats import ACTIVATION_STATS, GRADIENT_STATS
from nbdiag.units import UNIT_STATS, UNIT_WINDOW
from nbdiag.weights import UPDATE_STATS, WEIGHT_STATS

STATS = {
    "activation": ACTIVATION_STATS,
    "gradient": GRADIENT_STATS,
    "weight": WEIGHT_STATS,
    "update": UPDATE_STATS,
    "model": MODEL_STATS,
    "units": UNIT_STATS,
}
Spec = dict[str, dict[str, dict[str, float]]]  # kind -> layer -> stat -> value


def block(kind: str, layers: dict[str, dict[str, float]]) -> Block:
    """A Block of ``kind`` holding the given numbers, NaN for every stat not given."""
    stats = STATS[kind]
    values = np.full((len(layers), len(stats)), np.nan)
    for i, layer_stats in enumerate(layers.values()):
        for stat, value in layer_stats.items():
            values[i, stats.index(stat)] = value
    return Block(tuple(layers), stats, values)


def record(specs: list[Spec], steps: list[int] | None = None, types: dict[str, str] | None = None, losses=()) -> Record:
    """A Record of one sampled step per spec (steps 0, 1, ... unless given) and a loss per step."""
    rec = Record(capacity=1024)
    rec.update_meta(layer_types=dict(types or {}))
    for step, spec in zip(steps or range(len(specs)), specs, strict=True):
        rec.append(StepEntry(step, {kind: block(kind, layers) for kind, layers in spec.items()}))
    for step, value in enumerate(losses):
        rec.add_scalars(step, {"loss": value})
    return rec


def found(rec: Record, *finding_ids: str) -> dict[str, str]:
    """(id -> severity) of the findings with these ids; fails on a duplicated id."""
    findings = [f for f in evaluate(rec) if f.id in finding_ids]
    assert len({f.id for f in findings}) == len(findings), findings
    return {f.id: f.severity for f in findings}


# -- loss ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factor", "expected"),
    [(1.999, None), (2.0, "warn"), (9.99, "warn"), (loss.DIVERGING_FAIL_FACTOR, "fail"), (np.inf, "fail")],
)
def test_diverging_at_2x_and_10x_the_starting_loss(factor, expected):
    rec = record(_grad_growth(loss.DIVERGING_GRAD_GROWTH), losses=[2.0] * 5 + [2.0 * factor] * 20)
    assert found(rec, "train.diverging").get("train.diverging") == expected


def _grad_growth(growth: float, entries: int = 20) -> list[Spec]:
    """Sampled steps whose total parameter-gradient norm is 1 over the baseline and ``growth`` after it."""
    return [{"weight": {"w": {"grad_norm": 1.0 if i < BASELINE_ENTRIES else growth}}} for i in range(entries)]


@pytest.mark.parametrize(
    ("growth", "ratio", "expected"),
    [(99.0, None, "info"), (100.0, None, "fail"), (1.0, 0.099, "info"), (1.0, 0.11, "fail"), (None, None, "info")],
)
def test_a_rising_loss_alone_is_a_note_divergence_needs_growing_gradients_or_updates(growth, ratio, expected):
    """Severity policy (issue 25): a REINFORCE loss or a GAN generator logged as loss= rises with healthy gradients
    and updates; divergence is a rising loss AND a total gradient norm grown 10x or an update ratio above 1e-1."""
    specs = _grad_growth(growth) if growth is not None else [{} for _ in range(20)]
    if ratio is not None:
        specs = [{**spec, **_update_entry({"w": ratio})} for spec in specs]
    rec = record(specs, losses=[2.0] * 5 + [40.0] * 20)
    (finding,) = [f for f in evaluate(rec) if f.id == "train.diverging"]
    assert finding.severity == expected
    assert ("objective=" in finding.message) is (expected == "info")


def test_diverging_when_the_loss_explodes_within_the_first_steps():
    exploding = [2.3, 163.0, 2.1e5, 1.6e6] + [1e7] * 26  # the median of the first five is already huge
    assert found(record(_grad_growth(1e4), losses=exploding), "train.diverging") == {"train.diverging": "fail"}
    assert found(record([], losses=[2.3, 1.9, 1.5] + [0.5] * 27), "train.diverging") == {}


def test_diverging_names_the_first_nonfinite_loss_and_ignores_losses_that_start_negative():
    (finding,) = [f for f in evaluate(record([], losses=[2.0, 3.0, float("nan"), float("nan")]))]
    assert finding.id == "train.diverging" and finding.step == 2 and "after 3 at step 1" in finding.message
    assert found(record([], losses=[-2.0] * 5 + [100.0] * 20), "train.diverging") == {}


@pytest.mark.parametrize(
    ("drop", "logged", "expected"),
    [
        (0.0099, 50, "warn"),
        (0.0101, 50, None),
        (0.0, loss.STALL_MIN_STEPS - 1, None),
        (-0.0099, 60, "warn"),
        (-0.29, 60, None),  # an actor-critic loss that rose 29%: it moves, so it is not stalled
        (-0.5, 60, None),
    ],
)
def test_stalled_below_1_percent_change_either_way_after_50_steps(drop, logged, expected):
    rec = record([], losses=[2.0] * 5 + [2.0 * (1 - drop)] * (logged - 5))
    assert found(rec, "train.stalled").get("train.stalled") == expected


# -- gradients -----------------------------------------------------------------------------------------------------
def _gradient_entry(first_norm: float, last_norm: float = 1.0) -> Spec:
    """Layers 0, 1, 2 in forward order; the gradient block comes in backward order, as hooks fire."""
    activation = {layer: {"std": 1.0} for layer in ("0", "1", "2")}
    gradient = {"2": {"norm": last_norm}, "1": {"norm": 0.0}, "0": {"norm": first_norm}}  # a zero norm is skipped
    return {"activation": activation, "gradient": gradient}


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (999.0, {}),
        (1001.0, {"train.exploding_gradients": "warn"}),
        (1 / 999, {}),
        (1 / 1001, {"train.vanishing_gradients": "warn"}),
        (1 / gradients.DEPTH_RATIO_FAIL, {"train.vanishing_gradients": "fail"}),
    ],
)
def test_gradient_ratio_across_depth_beyond_1e3(ratio, expected):
    rec = record([_gradient_entry(ratio)] * 4)
    assert found(rec, "train.exploding_gradients", "train.vanishing_gradients") == expected


def test_depth_finding_names_first_layer_in_forward_order():
    (finding,) = evaluate(record([_gradient_entry(1e-4)] * 4))
    assert finding.layer == "0" and finding.evidence["last_layer"] == "2"
    assert finding.evidence["first_to_last_ratio"] == pytest.approx(1e-4)


@pytest.mark.parametrize(("growth", "expected"), [(999.0, None), (1001.0, "warn")])
def test_total_gradient_norm_growing_1e3_over_time(growth, expected):
    def entry(grad_norm: float) -> Spec:  # two parameters: total norm = sqrt(2) * grad_norm
        return {"weight": {"w": {"grad_norm": grad_norm}, "b": {"grad_norm": grad_norm}}}

    specs = [entry(1.0)] * BASELINE_ENTRIES + [entry(growth)] * WINDOW_ENTRIES
    rec = record(specs, steps=[*range(BASELINE_ENTRIES), *range(100, 100 + WINDOW_ENTRIES)])
    assert found(rec, "train.exploding_gradients").get("train.exploding_gradients") == expected


@pytest.mark.parametrize(
    ("stale_norms", "carried", "spacing", "expected"),
    [
        ([2.0] * 5, [1.0] * 5, 10, "warn"),
        ([2.0] * 5, [np.nan] * 5, 10, "warn"),  # nothing known about the tensors: stale everywhere decides
        ([2.0, 2.0, 0.0, 2.0, 2.0], [1.0] * 5, 10, None),  # one clean sampled step
        ([2.0] * 5, [1.0, 1.0, 0.0, 1.0, 1.0], 10, None),  # gradients released in between: zero_grad() ran
        ([2.0] * 5, [1.0] * 5, 7, None),  # 28 steps: a 32-micro-batch accumulation may not have reset yet
    ],
)
def test_grad_accumulation_needs_gradients_never_reset_over_the_window(stale_norms, carried, spacing, expected):
    specs = [{}] + [  # step 0: no model block
        {"model": {"(model)": {"stale_grad_norm": norm, "grad_carried": kept}}}
        for norm, kept in zip(stale_norms, carried, strict=True)
    ]
    rec = record(specs, steps=[spacing * i for i in range(len(specs))])
    assert found(rec, "train.grad_accumulation").get("train.grad_accumulation") == expected


# -- update/weight ratio -------------------------------------------------------------------------------------------
def _update_entry(ratios: dict[str, float], weight_before: float = 1.0, grad_norm: float = 1.0) -> Spec:
    update = {name: {"update_ratio": r, "update_norm": r * weight_before} for name, r in ratios.items()}
    return {"update": update, "weight": {name: {"grad_norm": grad_norm} for name in ratios}}


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.99e-5, "warn"), (updates.UPDATE_RATIO_LOW, None), (updates.UPDATE_RATIO_HIGH, None), (0.101, "warn")],
)
def test_update_ratio_median_outside_1e_5_to_1e_1(ratio, expected):
    stalled = [2.0] * 30  # the second signal: the loss does not fall
    rec = record([_update_entry({"a": ratio, "b": ratio * 0.5, "c": ratio * 2})] * 4, losses=stalled)
    assert found(rec, "train.update_ratio").get("train.update_ratio") == expected


@pytest.mark.parametrize(("final_loss", "expected"), [(1.81, "warn"), (1.79, "info"), (None, "info")])
def test_an_update_ratio_out_of_bounds_warns_only_when_the_loss_agrees(final_loss, expected):
    """Issue 25: pytorch/examples mnist_forward_forward (Adam lr 0.03) and torchdiffeq's ode_demo run at 0.13-0.16
    with a falling loss. Out of bounds warns when the loss kept >= 90% of its start; else a note."""
    losses = [] if final_loss is None else [2.0] * 5 + [final_loss] * 25
    rec = record([_update_entry({"a": 0.15, "b": 0.2, "c": 0.3})] * 4, losses=losses)
    assert found(rec, "train.update_ratio") == {"train.update_ratio": expected}


def test_update_ratio_leaves_out_zero_initialized_and_frozen_parameters():
    healthy = _update_entry({"w": 1e-3})
    zero_init = _update_entry({"b1": 1e35, "b2": 1e35}, weight_before=1e-38)  # ratio to a ~zero norm: undefined
    frozen = _update_entry({"f1": 0.0, "f2": 0.0}, grad_norm=float("nan"))  # no gradient: says nothing of the LR
    spec = {kind: {**healthy[kind], **zero_init[kind], **frozen[kind]} for kind in ("update", "weight")}
    assert found(record([spec] * 4), "train.update_ratio") == {}
    assert found(record([_update_entry({"w": 1e-3})] * 2), "train.update_ratio") == {}  # too few sampled steps


# -- activations ---------------------------------------------------------------------------------------------------
TYPES = {"0": "Linear", "1": "ReLU", "2": "Tanh", "3": "Linear"}


def _units_entry(layer: str, stat: str, count: float, units: float = 100.0, window: int = 3) -> Spec:
    fraction = {"dead_units": "dead_unit_frac", "saturated_units": "saturated_unit_frac"}[stat]
    row = {"units": units, stat: count, fraction: count / units, "window_steps": window, "window_start": 0}
    return {"activation": {"0": {}, layer: {"zero_frac": 0.92}, "3": {}}, "units": {layer: row}}


@pytest.mark.parametrize(
    ("dead", "expected"), [(0, None), (10, None), (36, None), (49, None), (50, "warn"), (99, "warn"), (100, "fail")]
)
def test_dead_units_at_half_of_the_layer_never_firing_over_a_full_window(dead, expected):
    """Issue 25: correct programs keep 10-36% of a ReLU layer quiet over 10 sampled batches and train fine."""
    rec = record([_units_entry("1", "dead_units", dead, window=UNIT_WINDOW)] * 3, types=TYPES)
    findings = [f for f in evaluate(rec) if f.id == "act.dead_units"]
    assert [f.severity for f in findings] == ([expected] if expected else [])  # a 92% zero fraction alone: none
    if expected:
        assert findings[0].message.startswith(f"layer 1 · ReLU: {dead} of 100 units")
        assert f"never fired over steps 0-2 ({UNIT_WINDOW} sampled steps)" in findings[0].message
        assert findings[0].evidence["dead_units"] == dead and findings[0].evidence["units"] == 100
    short = record([_units_entry("1", "dead_units", 100, window=UNIT_WINDOW - 1)] * 3, types=TYPES)
    assert found(short, "act.dead_units") == {}  # a window shorter than UNIT_WINDOW sampled steps
    quiet_once = [_units_entry("1", "dead_units", 10, window=UNIT_WINDOW)] + [_units_entry("1", "dead_units", 60)] * 2
    assert found(record(quiet_once, types=TYPES), "act.dead_units") == {}  # not dead at every recent sampled step


@pytest.mark.parametrize(("saturated", "expected"), [(24, None), (25, "warn"), (89, "warn"), (100, "warn")])
def test_saturated_units_of_bounded_activations_but_not_the_output_layer(saturated, expected):
    rec = record([_units_entry("2", "saturated_units", saturated)] * 3, types=TYPES)
    assert found(rec, "act.saturation").get("act.saturation") == expected
    output = _units_entry("4", "saturated_units", 100)  # a confident sigmoid output is the goal, not a problem
    output["activation"] = {"0": {}, "4": {}}
    assert found(record([output] * 3, types={**TYPES, "4": "Sigmoid"}), "act.saturation") == {}


@pytest.mark.parametrize(("final_loss", "expected"), [(0.21, "warn"), (0.2, "info"), (0.001, "info")])
def test_saturation_once_the_loss_reached_its_floor_is_a_note(final_loss, expected):
    """Issue 25: a converged digits CNN (loss ~0) with a saturated Tanh got `fail act.saturation`."""
    rec = record([_units_entry("2", "saturated_units", 95)] * 3, types=TYPES, losses=[2.0] * 5 + [final_loss] * 20)
    (finding,) = [f for f in evaluate(rec) if f.id == "act.saturation"]
    assert finding.severity == expected and ("reached its floor" in finding.message) is (expected == "info")


def _std_entry(first_std: float, deeper_std: float) -> Spec:
    """Tanh outputs at layers 1 and 3; a batch norm and the logits, both with a large std, which is theirs."""
    stds = {"0": 1.0, "1": first_std, "2": 1.0, "3": deeper_std, "4": 50.0, "5": 100.0}
    return {"activation": {layer: {"std": std} for layer, std in stds.items()}}


STD_TYPES = {"0": "Linear", "1": "Tanh", "2": "Linear", "3": "Tanh", "4": "BatchNorm1d", "5": "Linear"}


@pytest.mark.parametrize(
    ("first_std", "deeper_std", "expected"),
    [
        (1.0, 0.1, {}),  # exactly 10x smaller: not beyond
        (1.0, 0.0999, {"act.collapse": "warn"}),
        (6.0, 0.5, {}),  # 12x smaller but inside the 0.5-2 band
        (6.0, 0.499, {"act.collapse": "warn"}),
        (0.5, 5.0, {}),
        (0.5, 5.01, {"act.explode": "warn"}),
        (0.1, 2.0, {}),  # 20x larger but inside the band
        (0.1, 2.01, {"act.explode": "warn"}),
    ],
)
def test_activation_std_trend_over_depth(first_std, deeper_std, expected):
    stalled = [2.0] * 30  # the collapse's second signal: the loss does not fall
    rec = record([_std_entry(first_std, deeper_std)] * 3, types=STD_TYPES, losses=stalled)
    assert found(rec, "act.collapse", "act.explode") == expected


@pytest.mark.parametrize(
    ("final_loss", "first_gradient", "expected"),
    [(0.5, 1.0, "info"), (1.81, 1.0, "warn"), (0.5, 0.0099, "warn"), (0.5, 0.011, "info")],
)
def test_collapse_warns_only_with_a_stalled_loss_or_a_vanishing_gradient(final_loss, first_gradient, expected):
    """Issue 25: a GAN critic at the DCGAN paper's N(0, 0.02) init has small activations deep down and trains; the
    collapse is a warning when the loss keeps > 90% of its start or the first layer's gradient is 100x smaller."""
    entry = _std_entry(1.0, 0.05)
    entry["gradient"] = {"3": {"norm": 1.0}, "1": {"norm": first_gradient}}
    rec = record([entry] * 3, types=STD_TYPES, losses=[2.0] * 5 + [final_loss] * 25)
    assert found(rec, "act.collapse") == {"act.collapse": expected}


def test_collapse_only_at_init_is_a_note():
    specs = [_std_entry(1.0, 1e-4)] + [_std_entry(1.0, 0.8)] * (BASELINE_ENTRIES + WINDOW_ENTRIES)
    (finding,) = evaluate(record(specs, types=STD_TYPES))
    assert (finding.id, finding.severity, finding.layer, finding.step) == ("act.collapse", "info", "3", 0)
    assert activations.ACT_STD_LOW == 0.5 and activations.ACT_STD_HIGH == 2.0  # seeds/004 rule of thumb


# -- non-finite, duplicates, sources, reading cost -----------------------------------------------------------------
def test_nonfinite_names_the_layer():
    rec = record([{}], types={"1": "Log"})
    rec.note_nonfinite(NonFinite(3, "1", "activation", 5.0))
    (finding,) = evaluate(rec)
    assert (finding.id, finding.severity, finding.step) == ("train.nonfinite", "fail", 3)
    assert "layer 1 · Log at step 3" in finding.message


def test_one_finding_per_id_and_layer_the_worst_then_the_latest():
    def at(severity: str, step: int, layer: str = "1"):
        return make_finding("act.dead_units", severity, f"{severity} {step}", layer=layer, step=step)

    kept = _one_per_place([at("warn", 9), at("fail", 3), at("warn", 12), at("info", 20, layer="2"), at("warn", 5, "2")])
    assert sorted((f.layer, f.severity, f.step) for f in kept) == [("1", "fail", 3), ("2", "warn", 5)]


def test_evaluate_accepts_a_monitor_like_object_and_sorts_by_severity():
    rec = record([], losses=[2.0] * 60)
    rec.note_nonfinite(NonFinite(1, "x", "gradient", 1.0))

    class Source:
        record = rec

    findings = evaluate(Source())
    assert [f.severity for f in findings] == ["fail", "warn"] and isinstance(findings, Findings)


class _Tracked(dict):
    """Blocks of one entry that note which steps a reader looked at."""

    read: set[int] = set()

    def __init__(self, step: int, blocks: dict) -> None:
        super().__init__(blocks)
        self.step = step

    def get(self, key, default=None):
        _Tracked.read.add(self.step)
        return super().get(key, default)

    def __getitem__(self, key):
        _Tracked.read.add(self.step)
        return super().__getitem__(key)

    def __contains__(self, key):
        _Tracked.read.add(self.step)
        return super().__contains__(key)


def test_evaluate_reads_only_the_first_and_last_sampled_steps():
    spec = {**_gradient_entry(1.0), **_update_entry({"w": 1e-3}), "model": {"(model)": {"stale_grad_norm": 0.0}}}
    rec = record([], types=STD_TYPES)
    steps = range(300)
    for step in steps:
        rec.append(StepEntry(step, _Tracked(step, {kind: block(kind, layers) for kind, layers in spec.items()})))
    _Tracked.read.clear()
    evaluate(rec)
    allowed = set(steps[:BASELINE_ENTRIES]) | set(steps[-WINDOW_ENTRIES:])
    assert _Tracked.read and _Tracked.read <= allowed, sorted(_Tracked.read - allowed)


def test_findings_show_as_a_coloured_table_or_text():
    findings = Findings([make_finding("train.stalled", "warn", "the loss <does not> move", step=60)])
    html = findings._repr_html_()
    assert SEVERITY_COLOURS["warn"] in html and "train.stalled" in html and "&lt;does not&gt;" in html
    assert str(findings) == findings_text(findings) and "WARN train.stalled @step 60" in str(findings)
    assert "no findings" in Findings()._repr_html_()


def test_printed_findings_wrap_at_word_boundaries_and_keep_the_advice():
    long = "activation std 0.0031 vs 0.97 at the first activation " * 4
    findings = [make_finding("act.collapse", "warn", long, layer="encoder.block.7.mlp.act", step=1200)]
    text = findings_text(findings, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert " ".join(text.split()).count(" ".join(long.split())) == 1  # every word whole, none cut
    advice = findings[0].advice
    assert " ".join(advice.split()) in " ".join(text.split())
    assert "(CS231n lecture 5, weight initialization)" in " ".join(text.split())


def test_every_source_is_cited_by_title_and_section_never_a_file_id():
    from nbdiag.findings import CATALOG

    for finding_id, entry in CATALOG.items():
        assert "seeds/" not in entry.ref and ".txt" not in entry.ref, finding_id
        if entry.ref != "nbdiag" and not entry.ref.startswith("outside the seed texts"):  # GANs: none treats them
            assert any(title in entry.ref for title in ("37 reasons", "Karpathy's recipe", "CS231n")), finding_id
    assert "Generative Adversarial Nets" in CATALOG["train.gan_discriminator_wins"].ref


@pytest.mark.parametrize(("ratio", "deferred"), [(1e-7, True), (0.5, False)])
def test_tiny_updates_under_saturation_defer_to_it(ratio, deferred):
    """Large-init tanh (seeds/004): saturation is the cause, the tiny update ratio its consequence; a too-large
    ratio is a learning-rate problem of its own and keeps its severity."""
    spec = {**_update_entry({"w": ratio}), **_units_entry("2", "saturated_units", 95)}
    by_id = {f.id: f for f in evaluate(record([spec] * 3, types=TYPES, losses=[2.0] * 30))}
    assert by_id["act.saturation"].severity == "warn"  # never fail: saturation slows learning, it does not break it
    update = by_id["train.update_ratio"]
    assert (update.severity == "info") is deferred
    assert ("consequence of act.saturation at layer 2" in update.message) is deferred
    alone = {f.id: f for f in evaluate(record([_update_entry({"w": ratio})] * 3, losses=[2.0] * 30))}
    assert alone["train.update_ratio"].severity == "warn"


def test_finding_messages_count_in_number():  # "over 1 parameters" (issue 20)
    one = {f.id: f for f in evaluate(record([_update_entry({"w": 1e-7})] * 3, losses=[2.0] * 30))}
    two = {f.id: f for f in evaluate(record([_update_entry({"w": 1e-7, "v": 1e-7})] * 3, losses=[2.0] * 30))}
    assert "over 1 parameter is" in one["train.update_ratio"].message
    assert "over 2 parameters is" in two["train.update_ratio"].message
