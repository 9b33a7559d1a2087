"""The provenance guard: refuse to compare reports of different models' data, samples or metric versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gapdiag.errors import ProvenanceError
from gapdiag.report import Report


def provenance_conflicts(
    reference: Report,
    other: Report,
    labels: tuple[str, str] = ("baseline", "current"),
    *,
    gate: bool = False,
    precomputed_pair: bool = False,
) -> tuple[list[str], list[str]]:
    """``(conflicts, warnings)`` between two reports' provenance.

    Conflicts (the numbers are not comparable): different dataset fingerprint, ``metric_definitions_version``,
    sample size or sample seed; for a ``gate`` (``check``) also random-init weights on one side and trained ones
    on the other, which ``compare`` only warns about (showing what training changed is a fair comparison, gating
    a release on it is not). Warnings: different gapdiag version, a missing dataset fingerprint, and for a
    ``precomputed_pair`` (two files of precomputed vectors whose modalities, counts and pairing the caller found
    equal) their different fingerprints: two such files always differ, and nothing more tells their items apart.
    """
    a, b = labels
    conflicts: list[str] = []
    warnings: list[str] = []
    random = [_dig(r.provenance, "model", "random_init") for r in (reference, other)]
    if None not in random and random[0] != random[1]:
        words = [f"{'random-init' if r else 'trained'} weights ({label})" for r, label in zip(random, labels)]
        (conflicts if gate else warnings).append(f"{words[1]} against {words[0]}")

    def pair(what: str, x: Any, y: Any) -> str:
        return f"{what} {x} ({a}) vs {y} ({b})"

    fa, fb = (_dig(r.provenance, "dataset", "fingerprint") for r in (reference, other))
    if fa and fb and fa != fb and precomputed_pair:
        warnings.append(f"{a} and {b} are two files of precomputed vectors: their modalities, item counts and "
                        "pairing agree, which is all that tells that they embed the same items")
    elif fa and fb and fa != fb:
        conflicts.append(pair("different data: dataset fingerprint", str(fa)[:12], str(fb)[:12]))
    elif not (fa and fb):
        missing = a if not fa else b
        warnings.append(
            f"the {missing} report has no dataset fingerprint: cannot verify that both used the same data"
        )
    if reference.metric_definitions_version != other.metric_definitions_version:
        conflicts.append(
            pair(
                "different metric definitions: metric_definitions_version",
                reference.metric_definitions_version,
                other.metric_definitions_version,
            )
        )
    for key in ("size", "seed"):
        x, y = (_dig(r.provenance, "sample", key) for r in (reference, other))
        if x != y:
            conflicts.append(pair(f"different sampling: sample {key}", x, y))
    if reference.gapdiag_version != other.gapdiag_version:
        warnings.append(
            pair("different gapdiag versions: gapdiag", reference.gapdiag_version, other.gapdiag_version)
        )
    return conflicts, warnings


def guard_provenance(
    reference: Report,
    other: Report,
    *,
    force: bool,
    labels: tuple[str, str] = ("baseline", "current"),
    gate: bool = False,
    precomputed_pair: bool = False,
) -> list[str]:
    """Raise :class:`ProvenanceError` on conflicts unless ``force``; return the warnings (conflicts too if forced)."""
    conflicts, warnings = provenance_conflicts(reference, other, labels, gate=gate,
                                               precomputed_pair=precomputed_pair)
    if conflicts and not force:
        raise ProvenanceError(
            f"cannot compare {labels[0]} with {labels[1]}: " + "; ".join(conflicts),
            hint="measure both with the same data, sample size, seed and kind of weights, or pass --force",
        )
    return [f"forced: {c}" for c in conflicts] + warnings


def _dig(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)  # type: ignore[assignment]
    return d
