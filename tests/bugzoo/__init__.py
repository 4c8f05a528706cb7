"""Bug zoo: small training setups on digits or generated data, each with one planted bug and its finding ids.

``CASES`` lists them; a case's ``detector`` says whether ``nbdiag.preflight`` ('preflight') or the live health rules
('live') should report it; clean setups ('both') must raise no warn/fail in either.
"""

from tests.bugzoo.cases import CASES, DETECTORS, Case, Setup, cases, run_training

__all__ = ["CASES", "DETECTORS", "Case", "Setup", "cases", "run_training"]
