"""Exports: a self-contained HTML report with the findings, and a PNG of the dashboard."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("matplotlib")

from nbdiag.findings import make_finding  # noqa: E402
from nbdiag.views.export import savefig, to_html  # noqa: E402
from tests.test_dashboard import PNG_MAGIC, synthetic_source  # noqa: E402

FINDING = make_finding("train.nonfinite", "fail", "NaN in layer 3 at step 40", layer="3", step=40)


def test_html_report_is_self_contained_and_shows_findings(tmp_path):
    path = to_html(synthetic_source(findings=[FINDING]), tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    assert len(page) > 3_000_000  # plotly.js is inline
    assert "plotly.js v" in page or "Plotly" in page
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page)  # nothing fetched from the network
    assert "train.nonfinite" in page and "NaN in layer 3 at step 40" in page and FINDING.advice in page
    assert "3 · Tanh" in page  # readable layer names
    values = re.findall(r'"[yz]":\[([^\]]*)\]', page[page.rindex("Plotly.newPlot(") :])  # after plotly.js
    numbers = [n for found in values for n in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", found)]
    digits = [len(n.lstrip("-").split("e")[0].replace(".", "").lstrip("0")) for n in numbers]
    assert len(numbers) > 100 and max(digits) == 4  # values rounded to 4 significant digits: a smaller report


def test_savefig_writes_a_png_with_content(tmp_path):
    from matplotlib.image import imread

    path = savefig(synthetic_source(findings=[FINDING]), tmp_path / "dashboard.png", dpi=50)
    assert path.read_bytes().startswith(PNG_MAGIC)
    pixels = imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600
    assert np.std(pixels[..., :3]) > 0.05  # not a blank canvas
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50  # many colours: plots, not only text
