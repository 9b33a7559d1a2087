"""The "Diagnostics" section of the HTML report: where the gap lives, the hubs of retrieval, intrinsic dimension,
the raw geometry before normalisation.

Reads only the report (values and extras), so it renders for any saved report; returns "" when the report has no
diagnostics (older reports, or metrics not asked for).
"""

from __future__ import annotations

import html
import math
from typing import Any

from gapdiag.report.presentation import conforming_items
from gapdiag.report.record import Report

#: Hubs shown per direction.
SHOWN_HUBS = 5


def _num(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (
            "—"
            if isinstance(v, float) and not math.isfinite(v)
            else (f"{v:.4g}" if isinstance(v, float) else str(v))
        )
    return "—" if v is None else html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_num(c)}</td>' if isinstance(c, (int, float)) else f"<td>{_num(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _qualifiers(report: Report, base: str) -> list[str]:
    return [k.split("/", 1)[1] for k in report.metrics if k.split("/", 1)[0] == base and "/" in k]


def diagnostics_section(report: Report) -> str:
    """HTML for the diagnostics in ``report`` (``<h2>Diagnostics</h2>`` and three small tables), or ""."""
    m, extras = report.metrics, report.extras or {}
    parts: list[str] = []
    pairs = _qualifiers(report, "gap_w2_squared")
    if pairs:
        rows = []
        for q in pairs:
            dec = extras.get(f"gap_decomposition/{q}", {})
            top = ", ".join(f"{d['dim']} ({100 * d['share']:.0f} %)" for d in dec.get("top_dims", [])[:5])
            rows.append(
                [
                    q,
                    dec.get("centroid", math.nan),
                    m.get(f"gap_bures/{q}", math.nan),
                    m.get(f"gap_centroid_share/{q}", math.nan),
                    m.get(f"gap_dims_50/{q}", math.nan),
                    m.get(f"gap_dims_90/{q}", math.nan),
                    m.get(f"gap_dims_90_pca/{q}", math.nan),
                    m.get(f"mmd_pvalue/{q}", math.nan),
                    top,
                ]
            )
        parts.append(
            "<h3>Where the gap lives</h3><p>W₂² of Gaussian fits = ‖Δ‖² (centroid) + Bures (shape). A low "
            "centroid share means the modalities also differ in shape; few dimensions carrying 90 % of ‖Δ‖² "
            "mean the gap sits on a few coordinates (Schrodi et al. 2025).</p>"
            + _table(
                [
                    "pair",
                    "‖Δ‖²",
                    "Bures",
                    "centroid share",
                    "dims 50 %",
                    "dims 90 %",
                    "dims 90 % (PCA)",
                    "MMD p (centred)",
                    "top dimensions",
                ],
                rows,
            )
        )
    directions = _qualifiers(report, "hubness_skewness")
    if directions:
        rows = []
        for q in directions:
            hubs = extras.get(f"hubness/{q}", {}).get("hubs", [])[:SHOWN_HUBS]
            shown = "; ".join(
                f"#{h['item']} ×{h['occurrence']}"
                + (f" {h.get('caption') or h.get('path')}" if h.get("caption") or h.get("path") else "")
                for h in hubs
            )
            rows.append(
                [
                    q,
                    m.get(f"hubness_skewness/{q}", math.nan),
                    m.get(f"robin_hood/{q}", math.nan),
                    m.get(f"antihub_share/{q}", math.nan),
                    shown,
                ]
            )
        parts.append(
            "<h3>Hubs of retrieval</h3><p>How often each gallery item is in a query's top 10: skewed counts "
            "(a few hubs, many anti-hubs) turn the gap into retrieval errors (Radovanović et al. 2010).</p>"
            + _table(["direction", "skewness", "Robin Hood", "anti-hubs", "top hubs (item ×count)"], rows)
        )
    sets = list(dict.fromkeys([*_qualifiers(report, "twonn_dimension"), *_qualifiers(report, "isoscore")]))
    if sets:
        rows = [[q, m.get(f"twonn_dimension/{q}", math.nan), m.get(f"isoscore/{q}", math.nan)] for q in sets]
        parts.append(
            "<h3>Intrinsic dimension and isotropy</h3>" + _table(["set", "TwoNN dimension", "IsoScore"], rows)
        )
    raw = _raw_geometry(report)
    if raw:
        parts.append(raw)
    return "<h2>Diagnostics</h2>" + "".join(parts) if parts else ""


def _raw_geometry(report: Report) -> str:
    """The raw geometry (Levi & Gilboa 2025) per modality: norm shell, conformity estimate, the most and least
    conforming items; a modality given already normalised shows why its values are absent. "" when not measured."""
    m, extras, skipped = report.metrics, report.extras or {}, report.skipped
    modalities = list(dict.fromkeys(
        [k.split("/", 1)[1] for k in [*m, *skipped] if k.split("/", 1)[0] == "raw_norm_mean" and "/" in k]
        + [k.split("/", 1)[1] for k in extras if k.startswith("conformity_items/")]))
    if not modalities:
        return ""
    listed = {(end, modality): "; ".join(items) for end, modality, items in conforming_items(extras)}
    rows = [[q,
             m.get(f"raw_norm_mean/{q}", math.nan),
             m.get(f"raw_norm_std/{q}", math.nan),
             m.get(f"thin_shell_ratio/{q}", math.nan),
             m.get(f"conformity_estimate_r/{q}", math.nan),
             listed.get(("most", q), ""),
             listed.get(("least", q), "")] for q in modalities]
    why = [f"{name}: {reason}" for name, reason in skipped.items()
           if name.split("/", 1)[0] in ("raw_norm_mean", "raw_separability")]
    separability = "".join(
        f"<p>Linear separability of the modalities: raw vectors {_num(m[f'raw_separability/{q}'])}, unit vectors "
        f"{_num(m.get(f'modality_separability/{q}'))} (a raw value above the unit one: the shells differ in norm).</p>"
        for q in _qualifiers(report, "raw_separability"))
    return (
        "<h3>Raw geometry</h3><p>Before normalisation each modality's vectors lie on an off-centre shell (Levi &amp; "
        "Gilboa 2025): thin-shell ratio = std / mean of the norms (0 = one sphere). Conformity = an item's mean "
        "cosine to the other items of its modality; r = its correlation with the cosine to the raw mean.</p>"
        + separability
        + _table(["modality", "norm mean", "norm std", "thin-shell ratio", "conformity r (estimate)",
                  "most conforming (item, conformity)", "least conforming (item, conformity)"], rows)
        + "".join(f"<p>Skipped: {html.escape(line)}</p>" for line in why)
    )
