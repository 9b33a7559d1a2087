"""How measurements are shown to people: one number format, one metric order, a summary in words.

Used by the ``measure`` table, the HTML report and the compare figure alike, so that one value reads the
same everywhere (``0.2400``, never ``0.24`` in one place and ``2.4e-01`` in another). Pure functions only:
no I/O, no heavy imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from gapdiag.metrics import REGISTRY
from gapdiag.report.record import split_metric_name

#: PNG resolution of every figure, in files (``gapdiag plot``) and in the HTML report alike.
DEFAULT_DPI = 150

#: Significant digits of every displayed metric value.
SIGNIFICANT_DIGITS = 4
# Fixed-point notation between these powers of ten; scientific outside (a 1e-12 would print 16 zeros).
_FIXED_MIN_EXP, _FIXED_MAX_EXP = -5, 6


def describe_provenance(provenance: Mapping[str, Any]) -> str:
    """``"<model> on <dataset>"`` from a provenance dict (``{"model": {"name"}, "dataset": {"name"}}``): what
    figure titles and the report page call a measurement."""
    model = (provenance.get("model") or {}).get("name") or "unknown model"
    pretrained = (provenance.get("model") or {}).get("pretrained")
    if pretrained and pretrained not in str(model):
        model = f"{model} ({pretrained})"
    dataset = (provenance.get("dataset") or {}).get("name") or "unknown data"
    return f"{model} on {dataset}"


def format_number(value: Any) -> str:
    """A metric value as text with 4 significant digits, in fixed-point notation wherever it is readable.

    ``1.0 -> "1.000"``, ``0.24 -> "0.2400"``, ``7.5 -> "7.500"``, ``5.261e-05 -> "0.00005261"``,
    ``-3.217 -> "-3.217"``, ``123456.7 -> "123500"``; below 1e-5 or from 1e6 on: ``"1.235e-07"``.
    ``None`` -> ``"—"``, NaN -> ``"n/a"``; integers (counts) stay exact.

    Rounding happens before the digits are counted, so 0.99996 gives ``"1.000"``, not ``"1.0000"``.
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    rounded = float(f"{v:.{SIGNIFICANT_DIGITS}g}")
    exponent = math.floor(math.log10(abs(rounded)))
    if _FIXED_MIN_EXP <= exponent < _FIXED_MAX_EXP:
        return f"{rounded:.{max(0, SIGNIFICANT_DIGITS - 1 - exponent)}f}"
    return f"{v:.{SIGNIFICANT_DIGITS - 1}e}"


def format_value(v: float) -> str:
    """Table text for a metric value: the one display format of every gapdiag table
    (:func:`format_number`, 4 significant digits), an em dash when absent."""
    if v is None or not math.isfinite(v):
        return "—"
    return format_number(float(v))


def format_delta(v: float) -> str:
    """Signed :func:`format_value`."""
    if v is None or not math.isfinite(v):
        return "—"
    return ("+" if v >= 0 else "") + format_value(v)


def format_interval(interval: tuple[float, float] | None) -> str:
    """``[lo, hi]`` with :func:`format_number`; ``"—"`` when absent."""
    if interval is None:
        return "—"
    return f"[{format_number(interval[0])}, {format_number(interval[1])}]"


def direction_text(higher_is_better: bool | None) -> str:
    """``"higher"``, ``"lower"`` or ``"—"`` (descriptive metric)."""
    return {True: "higher", False: "lower", None: "—"}[higher_is_better]


def direction_arrow(higher_is_better: bool | None) -> str:
    """``"↑"``, ``"↓"`` or ``""``."""
    return {True: "↑", False: "↓", None: ""}[higher_is_better]


# ---------------------------------------------------------------------------------------------- ordering


def higher_is_better(base: str) -> bool | None:
    """The direction of a base metric from the registry (None for a metric it does not know)."""
    info = REGISTRY.get(base)
    return None if info is None else info.higher_is_better


def metric_family(name: str) -> str:
    """Registry family of a full metric name (``"gap"``, ``"cone"``, ...); ``""`` for an unknown base."""
    info = REGISTRY.get(split_metric_name(name)[0])
    return info.family if info is not None else ""


def order_metrics(names: Iterable[str]) -> list[str]:
    """Metric names grouped by family in the registry's order, then by base metric in registry order.

    Within one base the names keep their given order (qualifiers as measured); unknown bases come last,
    in their given order. This is the order of the CLI table, the HTML report and the compare figure.
    """
    families = {f: i for i, f in enumerate(dict.fromkeys(m.family for m in REGISTRY.values()))}
    bases = {b: i for i, b in enumerate(REGISTRY)}
    names = list(dict.fromkeys(names))

    def key(item: tuple[int, str]) -> tuple[int, int, int]:
        position, name = item
        base = split_metric_name(name)[0]
        info = REGISTRY.get(base)
        family = families[info.family] if info is not None else len(families)
        return family, bases.get(base, len(bases)), position

    return [name for _, name in sorted(enumerate(names), key=key)]


def group_by_family(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """``[(family, [names...]), ...]`` in :func:`order_metrics` order."""
    groups: dict[str, list[str]] = {}
    for name in order_metrics(names):
        groups.setdefault(metric_family(name), []).append(name)
    return list(groups.items())


# ------------------------------------------------------------------------- what changed between two models

#: What the numbers of the item-by-item comparison of two models mean (under its table, terminal and Markdown).
SIMILARITY_NOTE = "1 = unchanged; mutual k-NN = mean share of each item's 10 neighbours kept"


#: The columns of :func:`similarity_rows`, as the terminal and the Markdown show them.
SIMILARITY_COLUMNS = ("Set", "Linear CKA", "Linear CKA (biased)", "Mutual k-NN")


def similarity_rows(similarity: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(set, linear CKA, biased linear CKA, mutual k-NN)`` as text for each modality and the joint set of
    :func:`gapdiag.api.compare_models`'s result, in the order measured; an em dash where a value is absent.
    The biased form is shown beside the debiased one because papers report either (docs/metrics.md)."""
    values = similarity["metrics"]
    return [(q, *(format_value(values.get(f"{base}/{q}", math.nan))
                  for base in ("linear_cka", "linear_cka_biased", "mutual_knn")))
            for q in dict.fromkeys(k.split("/", 1)[1] for k in values)]


def most_changed(similarity: Mapping[str, Any], shown: int) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Per modality, its ``shown`` items whose neighbours changed most as ``(#row, sample, overlap, path or
    caption)`` text; the joint set is left out (its items are the modalities' own)."""
    changed = [(key.split("/", 1)[1], items) for key, items in similarity["extras"].items()
               if key.startswith("changed/") and key != "changed/joint"]
    return [(modality, [(f"#{it['item']}", str(it["sample"]), f"{it['overlap']:.2f}",
                         it.get("caption") or it.get("path") or "") for it in items[:shown]])
            for modality, items in changed]


# ------------------------------------------------------------------------ the most and least conforming items

#: Listed extras ``measure --json`` keeps beside the notes (short lists of items, not the bulky arrays).
LISTED_EXTRAS = ("conformity_items/",)


def listed_item(entry: Mapping[str, Any], value_key: str) -> str:
    """One listed item as text: ``#row caption-or-path (value)`` (the caption or path when the data was read)."""
    name = entry.get("caption") or entry.get("path")
    return f"#{entry['item']}" + (f" {name}" if name else "") + f" ({format_value(float(entry[value_key]))})"


def conforming_items(extras: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``(end, modality, [item text, ...])`` for the most and least conforming items of each modality in
    ``extras["conformity_items/<m>"]`` (Levi & Gilboa's conformity: the mean cosine to the modality's other items),
    each item as :func:`listed_item` with its exact conformity."""
    return [(end, key.split("/", 1)[1], [listed_item(e, "conformity") for e in value.get(end, [])])
            for key, value in extras.items() if key.startswith("conformity_items/") for end in ("most", "least")]


def listed_extras(extras: Mapping[str, Any]) -> dict[str, Any]:
    """The extras ``measure --json`` prints: the notes and the short item lists (:data:`LISTED_EXTRAS`)."""
    return {k: v for k, v in extras.items() if k == "notes" or k.startswith(LISTED_EXTRAS)}


# ---------------------------------------------------------------------------------------- summary in words

# Reading of the gap ‖Δ‖ (Liang et al. 2022): pretrained CLIP ≈ 0.82, gap-closing training ≈ 0.06.
_GAP_LEVELS = ((0.1, "closed"), (0.4, "small"), (0.7, "moderate"), (math.inf, "large"))
#: Held-out accuracy of the modality probe from which the modalities count as linearly separable.
SEPARABLE = 0.95
#: Mean within-modality cosine above which a modality sits in a narrow cone (healthy spaces ≈ 0.00x;
#: Grassucci et al. 2026 report a collapsed space at 0.122).
CONE = 0.1
#: Effective rank at or below which the space has collapsed onto a few directions.
COLLAPSED_RANK = 2.0


def _all(metrics: Mapping[str, float], base: str) -> list[tuple[str, float]]:
    """``(qualifier, value)`` of every finite ``base/*`` metric, in :func:`order_metrics` order."""
    return [
        (split_metric_name(n)[1] or base, float(metrics[n]))
        for n in order_metrics(metrics)
        if split_metric_name(n)[0] == base and math.isfinite(float(metrics[n]))
    ]


def _first(metrics: Mapping[str, float], base: str) -> tuple[str | None, float | None]:
    found = _all(metrics, base)
    return found[0] if found else (None, None)


def gap_level(gap: float) -> str:
    """``"closed"`` (< 0.1), ``"small"`` (< 0.4), ``"moderate"`` (< 0.7) or ``"large"``."""
    return next(word for limit, word in _GAP_LEVELS if gap < limit)


def summarize(metrics: Mapping[str, float]) -> list[str]:
    """A few sentences in words on the headline numbers of a measurement (what the HTML report opens with).

    Reads ``modality_gap`` with ``modality_separability`` (a hyperplane can split the modalities even when
    the gap is small) and ``raw_separability`` (the raw modalities may differ in norm alone), ``cos_tp`` against
    ``cos_nonmatching``, ``angular_value`` (the cone effect) and
    ``effective_rank`` (dimensional collapse). Metrics that are absent are not mentioned.

    Example:
        >>> summarize({"modality_gap/image-text": 0.24, "modality_separability/joint": 1.0})[0]
        'The modalities are linearly separable (1.000) although the gap is small (0.2400).'
    """
    f = format_number
    out: list[str] = []
    pair, gap = _first(metrics, "modality_gap")
    _, separability = _first(metrics, "modality_separability")
    if gap is not None:
        level = gap_level(gap)
        if separability is not None and separability >= SEPARABLE:
            link = "although" if level in ("closed", "small") else "and"
            out.append(
                f"The modalities are linearly separable ({f(separability)}) {link} "
                f"the gap is {level} ({f(gap)})."
            )
        elif separability is not None and level in ("closed", "small"):
            out.append(f"The gap is {level} ({f(gap)}) and a linear probe tells the modalities apart only "
                       f"{f(separability)} of the time: {pair} share one region of the space.")
        else:
            probe = (
                f"; a linear probe separates the modalities with accuracy {f(separability)}"
                if separability is not None
                else ""
            )
            out.append(f"The modality gap ({pair}) is {level} ({f(gap)}){probe}.")
    _, raw_separability = _first(metrics, "raw_separability")
    if raw_separability is not None and separability is not None and raw_separability >= SEPARABLE > separability:
        out.append(f"The raw vectors are linearly separable ({f(raw_separability)}) but their unit vectors are not "
                   f"({f(separability)}): the modalities differ in norm (Levi & Gilboa's separate shells), which "
                   "normalising removes.")
    _, cos_tp = _first(metrics, "cos_tp")
    _, cos_nm = _first(metrics, "cos_nonmatching")
    if cos_tp is not None and cos_nm is not None:
        margin = cos_tp - cos_nm
        verdict = "true pairs stand out" if margin >= 0.05 else "true pairs barely differ from random pairs"
        out.append(
            f"True pairs have mean cosine {f(cos_tp)} against {f(cos_nm)} for non-matching pairs: {verdict}."
        )
    cones = [(q, v) for q, v in _all(metrics, "angular_value") if q != "joint" and v > CONE]
    if cones:
        parts = ", ".join(f"{q} {f(v)}" for q, v in cones)
        out.append(f"Narrow cone (angular value {parts}; healthy spaces are near 0): the embeddings use "
                   "a small part of the sphere.")
    collapsed = [(q, v) for q, v in _all(metrics, "effective_rank") if v <= COLLAPSED_RANK]
    if collapsed:
        parts = ", ".join(f"{q} {f(v)}" for q, v in collapsed)
        out.append(f"Dimensional collapse: the effective rank is {parts}, i.e. about "
                   f"{max(1, round(collapsed[0][1]))} direction(s) carry the embeddings.")
    return out

