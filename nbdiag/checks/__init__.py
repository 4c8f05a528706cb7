"""Preflight recipe checks: each check is a function of its own; :func:`preflight` runs them together."""

from nbdiag.checks.backprop import check_batch_mixing
from nbdiag.checks.baseline import check_baseline
from nbdiag.checks.batches import collect_batches
from nbdiag.checks.coupling import check_loss_coupling
from nbdiag.checks.data import check_constant_inputs, check_input_scale, check_nonfinite
from nbdiag.checks.duplicates import check_duplicates, check_repeated_batches
from nbdiag.checks.frozen import check_frozen_init
from nbdiag.checks.gradcheck import GradcheckResult, gradcheck
from nbdiag.checks.gradflow import check_gradient_flow
from nbdiag.checks.leak import check_target_leak
from nbdiag.checks.loss import check_initial_loss, check_loss_input, expected_initial_loss
from nbdiag.checks.lr_range import LRRangeResult, check_learning_rate, lr_range_test
from nbdiag.checks.mode import check_train_mode
from nbdiag.checks.outputact import check_output_activation
from nbdiag.checks.overfit import check_overfit
from nbdiag.checks.preflight import CHECK_NAMES, DEFAULT_CHECKS, preflight
from nbdiag.checks.regularization import check_regularization
from nbdiag.checks.report import CheckTiming, Report
from nbdiag.checks.targets import check_batch_labels, check_class_balance, check_targets

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_CHECKS",
    "CheckTiming",
    "GradcheckResult",
    "LRRangeResult",
    "Report",
    "check_baseline",
    "check_batch_labels",
    "check_batch_mixing",
    "check_loss_coupling",
    "check_regularization",
    "check_class_balance",
    "check_constant_inputs",
    "check_duplicates",
    "check_frozen_init",
    "check_gradient_flow",
    "check_initial_loss",
    "check_input_scale",
    "check_learning_rate",
    "check_loss_input",
    "check_nonfinite",
    "check_output_activation",
    "check_overfit",
    "check_repeated_batches",
    "check_target_leak",
    "check_targets",
    "check_train_mode",
    "collect_batches",
    "expected_initial_loss",
    "gradcheck",
    "lr_range_test",
    "preflight",
]
