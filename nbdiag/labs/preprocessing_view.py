"""Drawing the preprocessing lab: two plotly FigureWidgets (point cloud, images) and the matplotlib version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nbdiag.labs._widgets import WidgetView

if TYPE_CHECKING:  # for annotations only: the lab never imports its view (see nbdiag.labs.lab)
    from nbdiag.labs.preprocessing import PreprocessingLab

IMAGE_PANELS = ("example", "mean image", "minus mean image", "minus channel mean", "channel standardized")
FEATURES = ("x1", "x2")  # the covariance matrices' rows and columns
CLOUD_MARGIN = 1.05


def shared_scales(lab: PreprocessingLab) -> dict[str, float]:
    """One scale per row, so the lesson shows without reading numbers (issue 20): ``cloud`` the half-width of the
    square drawn around 0 for every stage (zero-centering visibly moves the cloud, whitening visibly rounds it);
    ``cov`` the largest |covariance| of any stage (one colour scale); ``low``/``high`` the range of all images."""
    steps, covariances = lab.steps, lab.steps.covariances()
    points = [split[name][:, :2] for split in (steps.stages, steps.test_stages) for name in lab.stages]
    images = list(image_panels(lab).values())
    return {
        "cloud": CLOUD_MARGIN * max(float(np.abs(p).max()) for p in points),
        "cov": max(max(float(np.abs(c).max()) for c in covariances.values()), 1e-12),
        "low": min(float(np.min(image)) for image in images),
        "high": max(float(np.max(image)) for image in images),
    }


def image_panels(lab: PreprocessingLab) -> dict[str, np.ndarray]:
    """Panel title -> (H, W) image: the first training image through each method (first channel)."""
    images = lab.images
    return {
        "example": lab.raw_images[0],
        "mean image": images["mean_image"][0],
        "minus mean image": images["minus_mean_image"][0, 0],
        "minus channel mean": images["minus_channel_mean"][0, 0],
        "channel standardized": images["channel_standardized"][0, 0],
    }


class PreprocessingLabView(WidgetView):
    """Controls, the stages with their covariance matrices, the image methods, and the leakage table."""

    def __init__(self, lab: PreprocessingLab) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from nbdiag.views.plotly_widget import FitWidth, live

        self.lab = lab
        cloud = make_subplots(rows=2, cols=len(lab.stages), subplot_titles=lab.stages, vertical_spacing=0.1)
        for col in range(1, len(lab.stages) + 1):
            for split, color in (("train", "#4c72b0"), ("test", "#dd8452")):
                marker = {"size": 3, "color": color, "opacity": 0.6}
                trace = go.Scatter(mode="markers", name=split, marker=marker, showlegend=col == 1)
                cloud.add_trace(trace, row=1, col=col)
            heat = go.Heatmap(
                x=FEATURES,
                y=FEATURES,
                colorscale="RdBu",
                zmid=0,
                texttemplate="%{z:.2f}",
                showscale=col == len(lab.stages),
                colorbar={"len": 0.4, "y": 0.2, "title": {"text": "cov"}},
            )
            cloud.add_trace(heat, row=2, col=col)
            cloud.update_yaxes(autorange="reversed", row=2, col=col)
            cloud.update_yaxes(scaleanchor=f"x{col}", scaleratio=1, constrain="domain", row=1, col=col)
            cloud.update_xaxes(constrain="domain", row=1, col=col)
        cloud.update_layout(height=520, margin={"t": 40, "b": 20, "l": 30, "r": 10})
        images = make_subplots(rows=1, cols=len(IMAGE_PANELS), subplot_titles=IMAGE_PANELS)
        scales = shared_scales(lab)
        for col, image in enumerate(image_panels(lab).values(), start=1):
            heat = go.Heatmap(
                z=image, colorscale="gray", zmin=scales["low"], zmax=scales["high"], showscale=col == len(IMAGE_PANELS)
            )
            images.add_trace(heat, row=1, col=col)
            images.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
        images.update_layout(height=240, margin={"t": 40, "b": 10, "l": 10, "r": 10})
        images.update_annotations(font_size=12)
        self.figure_widget, self.image_widget = cloud, images  # go.Figures until drawn once (below)
        self.controls = {
            "correlation": w.FloatSlider(
                value=lab.correlation, min=-0.95, max=0.95, step=0.05, description="correlation"
            ),
            "test_shift": w.FloatSlider(value=lab.test_shift, min=-3, max=3, step=0.25, description="test shift"),
            "fit_on": w.ToggleButtons(options=("train", "all"), value=lab.fit_on, description="fit stats on"),
        }
        for name in ("correlation", "test_shift"):
            self.controls[name].disabled = lab.user_data is not None
        self.table = w.HTML()
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.refresh()
        # wrapped with their values: a FigureWidget edited before its view existed came up empty
        self.figure_widget, self.image_widget = live(self.figure_widget), live(self.image_widget)
        self.figures = (self.figure_widget, self.image_widget)
        image_note = w.HTML(
            "<b>images</b> (training half of the data): " + lab.image_leakage.to_html(float_format=lambda v: f"{v:.3f}")
        )
        self.box = w.VBox(
            [
                w.HBox(list(self.controls.values())),
                self.figure_widget,
                self.table,
                self.image_widget,
                FitWidth(),
                image_note,
            ]
        )

    def _on_change(self, _change: Any) -> None:
        self.lab.update(**{name: control.value for name, control in self.controls.items()})

    def refresh(self) -> None:
        """Put the current stages, covariances and leakage into the widgets (one batched message)."""
        lab = self.lab
        steps, covariances = lab.steps, lab.steps.covariances()
        scales = shared_scales(lab)
        fig = self.figure_widget
        with fig.batch_update():
            for i, name in enumerate(lab.stages):
                train, test, heat = fig.data[3 * i : 3 * i + 3]
                train.update(x=steps.stages[name][:, 0], y=steps.stages[name][:, 1])
                test.update(x=steps.test_stages[name][:, 0], y=steps.test_stages[name][:, 1])
                heat.update(z=covariances[name], zmin=-scales["cov"], zmax=scales["cov"])
            limit = [-scales["cloud"], scales["cloud"]]
            fig.update_xaxes(range=limit, row=1)
            fig.update_yaxes(range=limit, row=1)
        self.table.value = (
            f"<b>point cloud</b>: statistics fitted on <code>{lab.fit_on}</code>. Fitting on all data shifts the "
            "statistics toward the test split and hides part of its shift:"
            + lab.leakage.to_html(float_format=lambda v: f"{v:.3f}")
        )


def draw(lab: PreprocessingLab, fig) -> None:
    """The same panels with matplotlib on ``fig``: stages, covariance matrices, image methods."""
    steps, covariances = lab.steps, lab.steps.covariances()
    scales = shared_scales(lab)
    axes = fig.subplots(3, len(lab.stages))
    for col, name in enumerate(lab.stages):
        ax = axes[0, col]
        ax.scatter(*steps.stages[name][:, :2].T, s=3, alpha=0.6, label="train")
        ax.scatter(*steps.test_stages[name][:, :2].T, s=3, alpha=0.6, label="test")
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.set(xlim=(-scales["cloud"], scales["cloud"]), ylim=(-scales["cloud"], scales["cloud"]), aspect="equal")
        ax.set_title(name)
        cov = covariances[name]
        shown = axes[1, col].imshow(cov, cmap="RdBu", vmin=-scales["cov"], vmax=scales["cov"])
        if len(cov) <= 4:
            for (i, j), value in np.ndenumerate(cov):
                axes[1, col].text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        labels = FEATURES if len(cov) == len(FEATURES) else [str(i) for i in range(len(cov))]
        axes[1, col].set_xticks(range(len(cov)), labels)
        axes[1, col].set_yticks(range(len(cov)), labels)
    fig.colorbar(shown, ax=axes[1, -1], fraction=0.046, label="covariance")
    axes[0, 0].legend(fontsize=7)
    for ax, (title, image) in zip(axes[2], image_panels(lab).items(), strict=True):
        shown = ax.imshow(image, cmap="gray", vmin=scales["low"], vmax=scales["high"])
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[2, -1], fraction=0.046, label="pixel value (one scale)")
    fig.suptitle(f"preprocessing; statistics fitted on: {lab.fit_on}")


VIEW = PreprocessingLabView  # the widgets of this module's lab (see nbdiag.labs._widgets.VIEW_MODULES)


def draw_lab(lab, fig) -> None:
    """The lab drawn with matplotlib on ``fig``."""
    draw(lab, fig)
