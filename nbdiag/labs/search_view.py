"""Drawing the random vs grid search lab: where each strategy looked (lr x weight decay) and what it found."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lab imports this module to draw itself; at run time only that direction exists
    from nbdiag.labs.search import SearchLab

COLORS = {"grid": "#1f77b4", "random": "#d62728"}
MARKERS = {"coarse": "o", "fine": "^"}


def draw(lab: SearchLab, fig: Any) -> None:
    """Three axes: each strategy's trials in (lr, weight decay) coloured by validation accuracy, then validation
    accuracy against the learning rate for both (the important hyperparameter: the grid sees few values of it)."""
    frame, summary = lab.frame, lab.summary()
    axes = fig.subplots(1, 3)
    for ax, strategy in zip(axes[:2], ("grid", "random"), strict=True):
        trials = frame[frame["strategy"] == strategy]
        for stage, marker in MARKERS.items():
            part = trials[trials["stage"] == stage]
            points = ax.scatter(
                part["lr"],
                part["weight_decay"],
                c=part["val_acc"],
                cmap="viridis",
                vmin=0,
                vmax=1,
                marker=marker,
                s=36,
                edgecolors="k",
                linewidths=0.3,
                label=stage,
            )
        best = summary.loc[strategy]
        ax.scatter([best["best_lr"]], [best["best_weight_decay"]], marker="*", s=220, c="gold", edgecolors="k")
        ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="weight decay")
        ax.set_title(f"{strategy}: {int(best['distinct_lr'])} distinct lr, best {best['best_val_acc']:.1%}")
        ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(points, ax=axes[1], label="validation accuracy")
    for strategy, color in COLORS.items():
        trials = frame[frame["strategy"] == strategy]
        axes[2].scatter(trials["lr"], trials["val_acc"], color=color, s=18, alpha=0.8, label=strategy)
    axes[2].set(xscale="log", xlabel="learning rate", ylabel="validation accuracy", ylim=(0, 1.02))
    axes[2].set_title("what each strategy found along the lr axis")
    axes[2].legend(loc="lower left", fontsize=8)


def build_widget(lab: SearchLab) -> Any:
    """Budget and seed controls above the lab's figure (a PNG, redrawn when a control changes) and its summary."""
    import ipywidgets as w

    lab.controls = {
        "budget": w.IntSlider(value=lab.budget, min=4, max=49, description="trials/stage"),
        "seed": w.IntText(value=lab.seed, description="seed"),
    }
    lab.image = w.Image(format="png")
    lab.table = w.HTML()

    def on_change(_change) -> None:
        lab.update(budget=lab.controls["budget"].value, seed=lab.controls["seed"].value)

    for control in lab.controls.values():
        control.observe(on_change, names="value")
    refresh(lab)
    return w.VBox([w.HBox(list(lab.controls.values())), lab.image, lab.table])


def refresh(lab: SearchLab) -> None:
    """Redraw the widget's figure and summary table from ``lab.frame``."""
    lab.image.value = lab.png()
    lab.table.value = lab.summary().to_html(float_format=lambda v: f"{v:.4g}")
