"""Labs for teaching and for your own model: init, preprocessing, activations, random vs grid search (each a widget
and a data function).

``nbdiag.compare_inits`` lives in :mod:`nbdiag.labs.compare_inits`.
"""

from nbdiag.labs.activations import activation_curves, activation_stats, activations_lab
from nbdiag.labs.init import deep_net_activations, init_lab
from nbdiag.labs.preprocessing import (
    correlated_cloud,
    covariance,
    digits_images,
    image_preprocessing,
    preprocessing_lab,
    preprocessing_steps,
    split_leakage,
)
from nbdiag.labs.search import random_vs_grid, search_lab, search_summary

__all__ = [
    "activation_curves",
    "activation_stats",
    "activations_lab",
    "correlated_cloud",
    "covariance",
    "deep_net_activations",
    "digits_images",
    "image_preprocessing",
    "init_lab",
    "preprocessing_lab",
    "preprocessing_steps",
    "random_vs_grid",
    "search_lab",
    "search_summary",
    "split_leakage",
]
