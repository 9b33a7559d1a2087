"""`gapdiag plot --kind gap`: coordinates against a brute-force projection, and the bundled InfoNCE model vs its
gap-closing twin (look-alike UMAP maps) told apart by the separation of the marginal histograms."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import gapdiag

from gapdiag import api
from gapdiag.figures.gap import gap_projection, marginal_separation, plot_gap
from gapdiag.vectors import EmbeddingSet


def _es(img, txt):
    return EmbeddingSet(
        {"image": img, "text": txt}, {"image": np.arange(len(img)), "text": np.arange(len(txt))}, len(img)
    )


def test_coordinates_equal_a_brute_force_projection():
    rng = np.random.default_rng(0)
    img = (rng.normal(size=(40, 6)) * [1, 1, 3, 1, 1, 1] + [2, 0, 0, 0, 0, 0]).astype(np.float32)
    txt = (rng.normal(size=(30, 6)) + [0, 2, 0, 0, 0, 0]).astype(np.float32)
    proj = gap_projection(_es(img, txt), max_points=None)
    xi = img / np.linalg.norm(img, axis=1, keepdims=True)
    xt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    delta = xi.mean(0) - xt.mean(0)
    u = delta / np.linalg.norm(delta)
    joint = np.vstack([xi, xt])
    centred = joint - joint.mean(0)
    residual = centred - np.outer(centred @ u, u)
    _, _, vt = np.linalg.svd(residual, full_matrices=False)
    np.testing.assert_allclose(proj["x"]["image"], (xi - joint.mean(0)) @ u, atol=1e-5)
    # The principal direction's sign is arbitrary.
    y = np.concatenate([proj["y"]["image"], proj["y"]["text"]])
    assert abs(np.dot(y, residual @ vt[0])) == pytest.approx(
        np.linalg.norm(y) * np.linalg.norm(residual @ vt[0]), rel=1e-4
    )
    assert marginal_separation(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == pytest.approx(4.0)


def test_bundled_models_look_clearly_different(capsys, tmp_path):
    sep = {}
    for name in ("infonce", "gap_closing"):
        es = api.embed(None, api.bundled_checkpoint(name), device="cpu", progress=False)
        sep[name] = gap_projection(es)["separation"]
        fig = plot_gap(es)
        gids = {a.get_gid() for ax in fig.axes for a in [*ax.collections, *ax.patches]}
        assert {"gap/scatter/image", "gap/scatter/text", "gap/contributions"} <= gids
    # InfoNCE (gap 0.24): the two histograms sit apart; the gap-closing twin (0.05): on top of each other.
    assert sep["infonce"] > 2.0 and sep["gap_closing"] < 0.5, sep
    code, _out, err = gapdiag(capsys, "plot", "--kind", "gap", "--device", "cpu", "-q", "-o", tmp_path)
    assert code == 0, err
    assert (tmp_path / "gap.png").stat().st_size > 0
