"""The registry is the engine (issue #26): each entry says which passes it needs and how their results become its
value; ``compute_all`` plans the passes from the metrics asked for and dispatches from the registry, naming none.

A metric added to the registry alone (no line in the engine) is computed, skipped with its reason, bounded and
filtered like every other; the plan runs a pass only when a metric asked for needs it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from gapdiag.errors import InputError
from gapdiag.metrics import REGISTRY, MetricInfo, compute_all
from gapdiag.metrics import quadratic as quadratic_module
from gapdiag.metrics.engine import plan_passes
from gapdiag.metrics.passes import NEEDS, PAIRED, RANKS, SAMPLE, SUMS, TOP_K, Passes, Plan, Skip
from gapdiag.vectors import EmbeddingSet

METRICS = Path(__file__).resolve().parents[1] / "gapdiag" / "metrics"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
#: The engine's modules: they plan and run passes and dispatch to the registry, and name no metric.
ENGINE = ("engine.py", "quadratic.py", "passes.py")


def _es(n: int = 30, per: int = 2, d: int = 8, seed: int = 0) -> EmbeddingSet:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)) + 0.5
    ts = np.repeat(np.arange(n), per)
    txt = img[ts] + rng.normal(size=(n * per, d)) - 0.5
    return EmbeddingSet({"image": img.astype(np.float32), "text": txt.astype(np.float32)},
                        {"image": np.arange(n), "text": ts}, n)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module's code (f-string parts included; docstrings, which may give examples of
    metric names, left out), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("module", ENGINE)
def test_no_metric_name_appears_in_the_engine(module):
    names = re.compile(r"\b(" + "|".join(map(re.escape, REGISTRY)) + r")\b")
    found = [(line, names.search(text).group(0)) for line, text in _code_strings(METRICS / module) if names.search(text)]
    assert not found, f"{module} names metrics {found}: say it in their registry entries instead"


@pytest.mark.parametrize("base", sorted(REGISTRY))
def test_every_entry_says_what_it_needs_and_how_it_is_computed(base):
    info = REGISTRY[base]
    assert info.needs <= NEEDS, sorted(info.needs - NEEDS)
    if info.two_models:  # computed by compare_embeddings from two models' vectors, not by compute_all
        assert info.value is None
        return
    assert callable(info.value) and info.needs, base
    assert (RANKS in info.needs or TOP_K in info.needs) == (info.k > 0), (base, info.k)


def test_mutual_knn_depth_is_the_one_compare_uses():
    from gapdiag.metrics.similarity import KNN_K

    assert REGISTRY["mutual_knn"].k == KNN_K


def test_the_plan_is_the_union_of_the_needs_of_the_metrics_asked_for():
    assert plan_passes([REGISTRY["cos_tp"]]) == Plan(frozenset({PAIRED}))
    plan = plan_passes([REGISTRY[b] for b in ("recall_at_10", "recall_at_1", "robin_hood", "modality_gap")])
    assert plan == Plan(frozenset({SAMPLE, RANKS, TOP_K, SUMS}), ks=(1, 10), top_k=10)
    assert plan.stats and not plan.gram and not plan.paired and plan.quadratic
    assert not plan_passes([REGISTRY["effective_rank"], REGISTRY["cos_tp"]]).quadratic


def _progress(es: EmbeddingSet, metrics: list[str], **kw) -> list[str]:
    said: list[str] = []
    compute_all(es, metrics, progress=said.append, device="cpu", **kw)
    return said


def test_only_the_passes_the_metrics_need_run():
    es = _es()
    assert _progress(es, ["angular_value"]) == ["linear pass: image", "linear pass: text"]
    assert _progress(es, ["cos_tp"]) == ["paired pass: image-text"]
    assert _progress(es, ["cos_nonmatching"]) == ["linear pass: image", "linear pass: text", "paired pass: image-text"]
    assert _progress(es, ["recall_at_1"], retrieval_engine="blocked") == [
        "quadratic subset: normalising", "cross pass: image-text"]
    said = _progress(es, ["uniformity_wang_isola/image"], retrieval_engine="blocked")
    assert said == ["quadratic subset: normalising", "uniformity pass: image", "uniformity pass: text",
                    "cross pass: image-text"]  # the joint value needs every within and cross pass


@pytest.mark.parametrize(("metrics", "asked"), [
    (["recall_at_5"], {"uniformity": False, "retrieval": True, "topk": 0}),
    (["antihub_share"], {"uniformity": False, "retrieval": False, "topk": 10}),
    (["uniformity_cross"], {"uniformity": True, "retrieval": False, "topk": 0}),
    (["uniformity_cross", "recall_at_1", "hubness_skewness"], {"uniformity": True, "retrieval": True, "topk": 10}),
])
def test_the_fused_cross_pass_computes_what_the_plan_asks_and_no_more(monkeypatch, metrics, asked):
    calls = []
    real = quadratic_module.cross_pass
    monkeypatch.setattr(quadratic_module, "cross_pass", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    compute_all(_es(), metrics, retrieval_engine="blocked", device="cpu")
    assert len(calls) == 1 and {k: calls[0][k] for k in asked} == asked


def test_a_metric_added_to_the_registry_alone_is_computed_from_an_existing_pass(monkeypatch):
    """A linear one (the norm of each modality's mean unit vector) and a quadratic one (the mean unit vector's norm
    over the items in play), with nothing but their registry entries: no engine change."""

    def mean_norm(p: Passes, m: str) -> float:
        return float(np.linalg.norm(p.stats[m].total)) / p.stats[m].n

    def subset_mean_norm(p: Passes, m: str) -> float | Skip:
        return Skip("too few items in play") if p.units[m].shape[0] < 40 else float(np.linalg.norm(p.units[m].mean(0)))

    monkeypatch.setitem(REGISTRY, "test_mean_norm", MetricInfo(
        "test_mean_norm", None, (0.0, 1.0), "modality", "cone", "a test", "‖mean x̂‖", frozenset({SUMS}), mean_norm,
        also_joint=False, variant=("test_mean_norm", "norm of the mean unit vector")))
    monkeypatch.setitem(REGISTRY, "test_subset_norm", MetricInfo(
        "test_subset_norm", None, (0.0, 1.0), "modality", "cone", "a test", "‖mean x̂‖ in play",
        frozenset({SAMPLE}), subset_mean_norm))
    es = _es(n=30, per=2)
    values, extras = compute_all(es, ["test_mean_norm", "test_subset_norm"], device="cpu")
    for m in ("image", "text"):
        assert values[f"test_mean_norm/{m}"] == pytest.approx(np.linalg.norm(_unit(es.vectors[m]).mean(0)), rel=1e-6)
    assert values["test_subset_norm/text"] == pytest.approx(np.linalg.norm(_unit(es.vectors["text"]).mean(0)))
    assert extras["skipped"] == {"test_subset_norm/image": "too few items in play"}  # 30 images
    assert extras["variants"]["test_mean_norm"] == "norm of the mean unit vector"
    assert extras["variants"]["sample"] == {"size": None, "seed": 0}
    sampled, _ = compute_all(es, ["test_subset_norm/text"], sample=25, seed=1, device="cpu")
    assert sampled["test_subset_norm/text"] != values["test_subset_norm/text"]  # on the 50 texts of 25 samples
    with pytest.raises(InputError, match=r"test_subset_norm/image: too few items in play"):
        compute_all(es, ["test_subset_norm/image"], device="cpu")
    # Bounds apply to it too: far outside them, a value is a bug and is skipped, never shown.
    monkeypatch.setitem(REGISTRY, "test_mean_norm", MetricInfo(
        "test_mean_norm", None, (0.0, 1.0), "modality", "cone", "a test", "‖mean x̂‖", frozenset({SUMS}),
        lambda p, m: 3.0))
    values, extras = compute_all(es, None, device="cpu")
    assert "test_mean_norm/image" not in values and "outside its range" in extras["skipped"]["test_mean_norm/image"]


def test_every_need_is_described_in_how_the_engine_plans_passes():
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## How the engine plans passes"):]
    section = section[: section.find("\n## ", 1)]
    missing = [need for need in sorted(NEEDS) if f"`{need}`" not in section]
    assert not missing, f"docs/metrics.md, 'How the engine plans passes', lacks {missing}"
