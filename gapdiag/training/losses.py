"""Training objectives from the modality-gap literature (torch).

Every loss is a pure function of embedding tensors of shape ``(B, d)``: row ``i`` of every tensor belongs to
sample ``i`` of the batch. Embeddings are L2-normalised inside each loss, so callers pass raw encoder outputs.
``logit_scale`` is the *multiplier* of the cosine similarities, ``1/τ`` (what open_clip passes, already
exponentiated), as a float or a 0-d tensor (learnable through :class:`LearnableTemperature`).

:data:`LOSSES` maps the names ``gapdiag train`` accepts to callables with one signature,
``loss(embeddings: list[Tensor], logit_scale, **weights) -> Tensor``; :func:`get_loss` looks a name up and
raises :class:`gapdiag.errors.InputError` for an unknown one.

Sources:
    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021
    (CLIP, Fig. 3 pseudocode). Wang & Isola, "Understanding Contrastive Representation Learning through
    Alignment and Uniformity on the Hypersphere", ICML 2020 (Sec. 4.1). Fahim et al., "It's Not a
    Modality Gap: Characterizing and Addressing the Contrastive Gap", 2024 (the L_CUA and L_CUAXU objectives).
    Grassucci et al., "Closing the Modality Gap Aligns Group-Wise Semantics", 2026 (L_ATP, L_CU).
    Exact definitions: ``docs/losses.md`` and ``docs/metrics.md``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gapdiag.errors import InputError

__all__ = [
    "LOSSES",
    "LearnableTemperature",
    "alignment_loss",
    "atp_loss",
    "centroid_uniformity_loss",
    "clip_loss",
    "cross_uniformity_loss",
    "cua_loss",
    "cuaxu_loss",
    "gap_closing_loss",
    "get_loss",
    "infonce_loss",
    "uniformity_loss",
]

LossFn = Callable[..., Tensor]


def _check_batch(*modalities: Tensor, min_batch: int = 1) -> None:
    """Raise InputError unless every tensor is ``(B, d)`` with the same ``B >= min_batch`` and ``d``."""
    for k, z in enumerate(modalities):
        if z.ndim != 2:
            raise InputError(f"embedding tensor {k} has shape {tuple(z.shape)}; expected (batch, dim)")
    shapes = {tuple(z.shape) for z in modalities}
    if len(shapes) != 1:
        raise InputError(
            f"embedding tensors have different shapes {sorted(shapes)}; every modality needs one row per sample"
        )
    batch = modalities[0].shape[0]
    if batch < min_batch:
        raise InputError(f"batch of {batch} samples is too small for this loss; use at least {min_batch}")


def _check_modalities(modalities: Sequence[Tensor], min_batch: int = 1) -> None:
    if len(modalities) < 2:
        raise InputError(f"got {len(modalities)} modality tensor(s); these losses need at least 2")
    _check_batch(*modalities, min_batch=min_batch)


def _log_mean_exp(values: Tensor) -> Tensor:
    # logsumexp - log(count) stays finite where mean(exp(.)) underflows (large t or far-apart points).
    return torch.logsumexp(values, dim=0) - math.log(values.numel())


def clip_loss(x: Tensor, y: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE loss of CLIP.

    ``L = ½·[CE(S, I) + CE(Sᵀ, I)]`` with logits ``S = s · X̂Ŷᵀ`` (``s = logit_scale = 1/τ``) and the
    diagonal as targets: row ``i`` of ``x`` matches row ``i`` of ``y`` and every other row is a negative.

    Source: Radford et al., ICML 2021, Fig. 3 (numpy-like pseudocode of CLIP's training loss).

    Args:
        x: ``(B, d)`` embeddings of one modality (normalised inside).
        y: ``(B, d)`` embeddings of the other modality, row ``i`` paired with ``x[i]``.
        logit_scale: Multiplier ``1/τ`` of the cosine similarities (CLIP clamps it at 100).

    Returns:
        0-d tensor, the mean of the row-wise (x→y) and column-wise (y→x) cross-entropies.
    """
    _check_batch(x, y)
    logits = logit_scale * F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def infonce_loss(*modalities: Tensor, logit_scale: Tensor | float) -> Tensor:
    """CLIP's InfoNCE for any number ``M >= 2`` of paired modalities.

    ``L = mean_{a<b} clip_loss(Z_a, Z_b)`` over the ``M(M-1)/2`` unordered modality pairs. For ``M = 2`` this
    is :func:`clip_loss`. Averaging (rather than summing) keeps the scale of the loss independent of ``M``,
    so the weights of the regularisers in :func:`gap_closing_loss` mean the same for 2 and 3 modalities.

    Source: Radford et al., ICML 2021, Fig. 3, applied pairwise as in Grassucci et al. 2026.

    Args:
        *modalities: ``M`` tensors of shape ``(B, d)``, row ``i`` of each belonging to sample ``i``.
        logit_scale: Multiplier ``1/τ`` of the cosine similarities.

    Returns:
        0-d tensor.
    """
    _check_modalities(modalities)
    pairs = list(itertools.combinations(modalities, 2))
    return torch.stack([clip_loss(a, b, logit_scale) for a, b in pairs]).mean()


def alignment_loss(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """Alignment of true pairs, ``L_align = mean_i ‖x̂_i − ŷ_i‖₂^α``.

    For ``α = 2`` it equals ``2 − 2·mean_i cos(x_i, y_i)`` (= ``2 − 2·Cos_TP``); 0 when every pair coincides.

    Source: Wang & Isola, ICML 2020, Sec. 4.1, L_align (``α = 2`` default as in their code).

    Args:
        x: ``(B, d)`` embeddings (normalised inside).
        y: ``(B, d)`` embeddings, row ``i`` paired with ``x[i]``.
        alpha: Exponent ``α > 0``.

    Returns:
        0-d tensor in ``[0, 2^α]``.
    """
    _check_batch(x, y)
    if alpha <= 0:
        raise InputError(f"alpha={alpha} must be positive")
    squared = (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).pow(2).sum(dim=-1)
    # Raising the squared distance to α/2 avoids the sqrt, whose gradient is undefined where a pair coincides.
    return squared.pow(alpha / 2).mean()


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """``‖â_i − b̂_j‖²`` for unit vectors as ``2 − 2·cos``: smooth everywhere, unlike ``cdist`` at 0."""
    return (2 - 2 * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T).clamp_min(0)


def uniformity_loss(z: Tensor, t: float = 2.0) -> Tensor:
    """Uniformity, ``L_unif = log mean_{i<j} exp(−t·‖ẑ_i − ẑ_j‖²)`` over the ``B(B−1)/2`` unordered pairs.

    Lower is more uniform; 0 for a batch of identical vectors, ``−4t`` at best for antipodal pairs.

    Source: Wang & Isola, ICML 2020, Sec. 4.1, L_uniform (Gaussian potential, ``t = 2``).

    Args:
        z: ``(B, d)`` embeddings of one set (normalised inside), ``B >= 2``.
        t: Scale ``t > 0`` of the Gaussian potential.

    Returns:
        0-d tensor in ``[−4t, 0]``.
    """
    _check_batch(z, min_batch=2)
    rows, cols = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    return _log_mean_exp(-t * _squared_distances(z, z)[rows, cols])


def cross_uniformity_loss(x: Tensor, y: Tensor, t: float = 2.0) -> Tensor:
    """Cross-modal uniformity, ``L_xunif = log mean_{i≠j} exp(−t·‖x̂_i − ŷ_j‖²)``.

    Runs over the ``B(B−1)`` ordered off-diagonal image×text pairs (the diagonal holds the true pairs, which
    alignment pulls together). Lower means non-matching pairs are spread apart across the modalities.

    Source: Fahim et al. 2024 (the cross-modal uniformity term of L_CUAXU).

    Args:
        x: ``(B, d)`` embeddings (normalised inside), ``B >= 2``.
        y: ``(B, d)`` embeddings, row ``i`` paired with ``x[i]``.
        t: Scale ``t > 0`` of the Gaussian potential.

    Returns:
        0-d tensor in ``[−4t, 0]``.
    """
    _check_batch(x, y, min_batch=2)
    off_diagonal = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return _log_mean_exp(-t * _squared_distances(x, y)[off_diagonal])


def cua_loss(
    x: Tensor,
    y: Tensor,
    logit_scale: Tensor | float,
    *,
    clip_weight: float = 1.0,
    align_weight: float = 1.0,
    uniform_weight: float = 1.0,
) -> Tensor:
    """CLIP + alignment + uniformity, ``L_CUA = w_c·L_CLIP + w_a·L_align + w_u·(½·L_unif(X̂) + ½·L_unif(Ŷ))``.

    Uniformity is applied within each modality and averaged; alignment uses ``α = 2`` and uniformity
    ``t = 2``. All weights are 1 in the paper.

    Source: Fahim et al., "It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap", 2024
    (L_CUA).

    Args:
        x: ``(B, d)`` embeddings (normalised inside), ``B >= 2``.
        y: ``(B, d)`` embeddings, row ``i`` paired with ``x[i]``.
        logit_scale: Multiplier ``1/τ`` of the cosine similarities in L_CLIP.
        clip_weight: Weight of :func:`clip_loss`.
        align_weight: Weight of :func:`alignment_loss`.
        uniform_weight: Weight of the mean within-modality :func:`uniformity_loss`.

    Returns:
        0-d tensor.
    """
    uniform = (uniformity_loss(x) + uniformity_loss(y)) / 2
    return (
        clip_weight * clip_loss(x, y, logit_scale)
        + align_weight * alignment_loss(x, y)
        + uniform_weight * uniform
    )


def cuaxu_loss(
    x: Tensor,
    y: Tensor,
    logit_scale: Tensor | float,
    *,
    clip_weight: float = 1.0,
    align_weight: float = 1.0,
    uniform_weight: float = 1.0,
    cross_uniform_weight: float = 1.0,
) -> Tensor:
    """``L_CUAXU = L_CUA + w_x·L_xunif``: :func:`cua_loss` plus :func:`cross_uniformity_loss`.

    Source: Fahim et al. 2024 (L_CUAXU; all weights 1).

    Args:
        x: ``(B, d)`` embeddings (normalised inside), ``B >= 2``.
        y: ``(B, d)`` embeddings, row ``i`` paired with ``x[i]``.
        logit_scale: Multiplier ``1/τ`` of the cosine similarities in L_CLIP.
        clip_weight: Weight of :func:`clip_loss`.
        align_weight: Weight of :func:`alignment_loss`.
        uniform_weight: Weight of the mean within-modality :func:`uniformity_loss`.
        cross_uniform_weight: Weight of :func:`cross_uniformity_loss`.

    Returns:
        0-d tensor.
    """
    cua = cua_loss(
        x, y, logit_scale, clip_weight=clip_weight, align_weight=align_weight, uniform_weight=uniform_weight
    )
    return cua + cross_uniform_weight * cross_uniformity_loss(x, y)


def atp_loss(*modalities: Tensor) -> Tensor:
    """Align True Pairs, ``L_ATP = mean_i ‖x̂_i − ŷ_i‖²``.

    For ``M > 2`` modalities: the mean over the ``M(M−1)/2`` unordered modality pairs. For two modalities
    it is :func:`alignment_loss` with ``α = 2``; 0 when every modality gives the same direction per sample.

    Source: Grassucci et al., "Closing the Modality Gap Aligns Group-Wise Semantics", 2026 (L_ATP).

    Args:
        *modalities: ``M >= 2`` tensors of shape ``(B, d)`` (normalised inside).

    Returns:
        0-d tensor in ``[0, 4]``.
    """
    _check_modalities(modalities)
    return torch.stack(
        [alignment_loss(a, b, alpha=2.0) for a, b in itertools.combinations(modalities, 2)]
    ).mean()


def centroid_uniformity_loss(*modalities: Tensor, t: float = 2.0) -> Tensor:
    """Centroid Uniformity, ``L_CU = log mean_{i<j} exp(−t·‖c_i − c_j‖²)``.

    ``c_i = Normalize(mean_m ẑ^m_i)`` is the renormalised mean of the ``M`` normalised embeddings of sample
    ``i``; L_CU is the Wang & Isola uniformity of these per-sample centroids, so it spreads samples apart
    without pushing the modalities of one sample away from each other.

    Source: Grassucci et al. 2026 (L_CU, ``t = 2``).

    Args:
        *modalities: ``M >= 2`` tensors of shape ``(B, d)`` (normalised inside), ``B >= 2``.
        t: Scale ``t > 0`` of the Gaussian potential.

    Returns:
        0-d tensor in ``[−4t, 0]``.
    """
    _check_modalities(modalities, min_batch=2)
    centroid = torch.stack([F.normalize(z, dim=-1) for z in modalities]).mean(dim=0)
    return uniformity_loss(centroid, t=t)  # normalises the centroids


def gap_closing_loss(
    *modalities: Tensor,
    logit_scale: Tensor | float,
    lambda_atp: float = 1.0,
    lambda_cu: float = 1.0,
) -> Tensor:
    """``L = L_InfoNCE + λ₁·L_ATP + λ₂·L_CU``, the gap-closing objective.

    ``L_InfoNCE`` is :func:`infonce_loss` (the mean of CLIP's loss over the modality pairs when ``M > 2``),
    ``L_ATP`` is :func:`atp_loss`, ``L_CU`` is :func:`centroid_uniformity_loss` with ``t = 2``.
    ``λ₁ = λ₂ = 1`` as in the paper; its released config also schedules the weights over training and fixes
    ``τ = 0.1`` (``logit_scale = 10``), which a training loop does, not this function.

    Source: Grassucci et al., "Closing the Modality Gap Aligns Group-Wise Semantics", 2026.

    Args:
        *modalities: ``M >= 2`` tensors of shape ``(B, d)`` (normalised inside), ``B >= 2``.
        logit_scale: Multiplier ``1/τ`` of the cosine similarities in InfoNCE.
        lambda_atp: Weight ``λ₁`` of L_ATP.
        lambda_cu: Weight ``λ₂`` of L_CU.

    Returns:
        0-d tensor.
    """
    return (
        infonce_loss(*modalities, logit_scale=logit_scale)
        + lambda_atp * atp_loss(*modalities)
        + lambda_cu * centroid_uniformity_loss(*modalities)
    )


class LearnableTemperature(nn.Module):
    """Learnable logit scale ``s = exp(θ)``, CLIP's parametrisation of the inverse temperature.

    ``θ`` starts at ``log(1/init_temperature)`` (CLIP: ``1/0.07``). Like open_clip, the value is kept in
    ``[1, max_scale]`` (CLIP: 100): :meth:`forward` clamps what it returns and :meth:`clamp_` clamps the
    parameter itself; call it after every ``optimizer.step()`` as open_clip's training loop does, so that
    ``θ`` never drifts past the bound where the clamp would hide its gradient. For a fixed temperature
    (Grassucci et al. use ``τ = 0.1``) call ``requires_grad_(False)``.

    Source: Radford et al., ICML 2021, Sec. 2.5; open_clip ``CLIP.logit_scale`` and its training loop.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        if not 0 < init_temperature <= 1:
            raise InputError(f"init_temperature={init_temperature} must be in (0, 1]")
        if max_scale < 1:
            raise InputError(f"max_scale={max_scale} must be at least 1")
        self.max_log_scale = math.log(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def forward(self) -> Tensor:
        """Return the logit scale ``exp(clamp(θ, 0, log max_scale))`` as a 0-d tensor."""
        return self.log_scale.clamp(0.0, self.max_log_scale).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the parameter in place to ``[0, log max_scale]`` (open_clip does this after each step)."""
        self.log_scale.clamp_(0.0, self.max_log_scale)

    @property
    def temperature(self) -> float:
        """Current temperature ``τ = 1/s``."""
        return float(1.0 / self.forward().detach())


def _registry_entry(name: str, fn: LossFn, weight_names: tuple[str, ...] = (),
                    n_modalities: int | None = None) -> LossFn:
    """Adapt ``fn`` to ``loss(embeddings, logit_scale, **weights)`` with one-line errors for bad weights:
    ``weight_names`` are ``fn``'s keyword weights (``tests/test_losses.py`` holds them equal to its signature)."""

    def loss(embeddings: Sequence[Tensor], logit_scale: Tensor | float, **weights: float) -> Tensor:
        unknown = sorted(set(weights) - set(weight_names))
        if unknown:
            valid = ", ".join(weight_names) or "none"
            raise InputError(f"loss {name!r} has no weight {unknown[0]!r}; valid weights: {valid}")
        if n_modalities is not None and len(embeddings) != n_modalities:
            raise InputError(
                f"loss {name!r} takes exactly {n_modalities} modalities, got {len(embeddings)}; "
                "use 'infonce' or 'atp_cu' for more"
            )
        return fn(*embeddings, logit_scale=logit_scale, **weights)

    loss.__name__ = f"{name}_entry"
    loss.__doc__ = f"Registry entry {name!r}: calls {fn.__name__}(*embeddings, logit_scale=..., **weights)."
    loss.weight_names = weight_names  # type: ignore[attr-defined]
    return loss


LOSSES: dict[str, LossFn] = {
    "infonce": _registry_entry("infonce", infonce_loss),
    "cua": _registry_entry("cua", cua_loss, ("clip_weight", "align_weight", "uniform_weight"), n_modalities=2),
    "cuaxu": _registry_entry("cuaxu", cuaxu_loss,
                             ("clip_weight", "align_weight", "uniform_weight", "cross_uniform_weight"), n_modalities=2),
    "atp_cu": _registry_entry("atp_cu", gap_closing_loss, ("lambda_atp", "lambda_cu")),
}
"""Loss name -> ``loss(embeddings: list[Tensor], logit_scale, **weights) -> Tensor`` for ``gapdiag train``.

``embeddings`` holds one ``(B, d)`` tensor per modality; ``weights`` are the keyword weights of the wrapped
function (``entry.weight_names``): none for ``infonce``; ``clip_weight``, ``align_weight``,
``uniform_weight`` for ``cua`` (plus ``cross_uniform_weight`` for ``cuaxu``); ``lambda_atp``, ``lambda_cu``
for ``atp_cu``.
"""


def get_loss(name: str) -> LossFn:
    """Return the registered loss ``name``; raise InputError listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}") from None
