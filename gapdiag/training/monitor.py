"""``gapdiag.Monitor``: the geometry of a model's embeddings, gathered batch by batch inside a training loop.

In the style of torchmetrics: a thin stateful wrapper that only gathers what the metric room's pure functions read.

* **Linear metrics** (gap, Cos_TP, angular value, effective rank, the W2 split, ... :func:`~gapdiag.metrics.engine.
  streamed_metrics`) are exact on every sample, in constant memory: per modality the count, the sum and the Gram
  matrix of the unit vectors, and the summed true-pair cosines, accumulated in float64 on the batches' device;
  :func:`~gapdiag.metrics.engine.compute_from_stats` turns them into values with the engine's own value functions.
* **Pair metrics** (uniformity, R@K, hubness, V-Measure, ...) run on a seeded sample of at most ``sample`` samples
  (:class:`~gapdiag.training.reservoir.Reservoir`), held on the host and measured by
  :func:`~gapdiag.metrics.engine.compute_all`; the result says how many samples they used.

``update()`` costs the normalisation, one ``d × d`` Gram product per modality and one synchronisation (the check
that every vector is finite and non-zero); ``benchmarks/monitor.py`` measures it. ``sync()`` makes every rank of
``torch.distributed`` hold the state of all of them.

>>> monitor = Monitor(sample=1024, seed=0)                  # doctest: +SKIP
>>> for images, texts in loader:                            # doctest: +SKIP
...     monitor.update(model.encode_image(images), model.encode_text(texts))
>>> monitor.compute()["modality_gap/image-text"]            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gapdiag.errors import InputError
from gapdiag.metrics.blocked import LinearStats
from gapdiag.metrics.engine import compute_all, compute_from_stats, plan_passes, streamed_metrics
from gapdiag.metrics.passes import GRAM, LABELS, QUADRATIC_NEEDS
from gapdiag.metrics.registry import REGISTRY
from gapdiag.metrics.sampling import check_sample_size
from gapdiag.training.monitor_sync import merge_ranks
from gapdiag.training.reservoir import Reservoir, host_rows

#: The pair metrics a Monitor computes unless told otherwise (on its sample).
PAIR_METRICS = ("uniformity_wang_isola", "uniformity_cross", "recall_at_1", "recall_at_5", "recall_at_10",
                "hubness_skewness", "robin_hood", "antihub_share", "v_measure_class", "v_measure_modality")
#: The default size of the sample the pair metrics use (samples: one image and its captions each).
DEFAULT_SAMPLE = 4096
#: The state's names of the two modalities (the result names them as the Monitor is told).
MODALITIES = ("image", "text")


def pair_metrics() -> list[str]:
    """The pair metrics a Monitor can compute on its sample: those that read the sample's unit vectors and, at most,
    labels (not every item, the raw vectors, zero-shot classifiers or attributes, which the sample does not hold)."""
    return [b for b, info in REGISTRY.items() if info.quadratic and not info.two_models
            and info.needs <= QUADRATIC_NEEDS | {LABELS}]


class MonitorResult(dict):  # type: ignore[type-arg]
    """What :meth:`Monitor.compute` returns: a plain ``{name: float}`` dict for any logger, the metrics by their
    ``measure`` names plus ``monitor/samples`` (samples seen), ``monitor/sample_size`` (samples the pair metrics
    used) and ``monitor/seed``; ``skipped`` (name -> reason) and ``extras`` (gap vector, spectra, variants) beside."""

    skipped: dict[str, str]
    extras: dict[str, Any]


class Monitor:
    """Gather image and text embeddings batch by batch; :meth:`compute` the metrics of everything seen so far.

    Args:
        metrics: Base metric names (``"modality_gap"``, ``"recall_at_1"``); None: every linear metric
            (:func:`~gapdiag.metrics.engine.streamed_metrics`) and :data:`PAIR_METRICS`.
        sample: The most samples the pair metrics use (memory: ``sample × (1 + captions) × d`` floats on the host).
        seed: Seed of the sample and of the seeded metrics (k-means of V-Measure), as ``measure --seed``.
        total: The number of samples the loop will feed, when known: the pair metrics then use exactly the samples
            ``measure --sample sample --seed seed`` draws from them (sample ids are the ``indices`` of update).
        modalities: The names of the image and the text modality in the metric names (``modality_gap/image-text``),
            as ``measure`` names a dataset's modalities.

    Raises:
        InputError: An unknown metric, one a monitor cannot compute, or a bad sample size, seed or total.
    """

    def __init__(self, metrics: Sequence[str] | None = None, *, sample: int = DEFAULT_SAMPLE, seed: int = 0,
                 total: int | None = None, modalities: tuple[str, str] = MODALITIES) -> None:
        check_sample_size(sample)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"monitor: seed must be a whole number >= 0, got {seed!r}")
        if total is not None and (isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 1):
            raise InputError(f"monitor: total must be a whole number >= 1 (samples the loop feeds), got {total!r}")
        linear, pairs = streamed_metrics(), pair_metrics()
        chosen = [*linear, *PAIR_METRICS] if metrics is None else list(metrics)
        unfit = [m for m in chosen if m not in linear and m not in pairs]
        if unfit:
            raise InputError(f"monitor: cannot compute {', '.join(unfit)}; it computes {', '.join(linear + pairs)}")
        self.linear = [m for m in linear if m in chosen]
        self.pairs = [m for m in pairs if m in chosen]
        if len(modalities) != 2 or len(set(modalities)) != 2:
            raise InputError(f"monitor: modalities must be two different names (image, text), got {modalities!r}")
        self.sample, self.seed, self.total = int(sample), int(seed), total
        self.modalities = (str(modalities[0]), str(modalities[1]))
        self._gram = GRAM in plan_passes(REGISTRY[b] for b in self.linear).needs
        self.reset()

    def reset(self) -> None:
        """Forget every batch (the next epoch starts afresh)."""
        self._stats: dict[str, list[Any]] = {}  # modality -> [count, Σx̂, Σx̂x̂ᵀ or None] (float64 tensors)
        self._true: list[Any] = [0, None]  # number and Σ cos of the true pairs
        self._reservoir = Reservoir(self.sample, self.seed, self.total)
        self._updates = 0
        self._seen = 0
        self._synced = False
        self._labelled: bool | None = None  # whether the batches come with labels (all of them, or none)

    def update(self, image_emb: Any, text_emb: Any, labels: Any = None, *, indices: Any = None,
               text_sample: Any = None) -> None:
        """Add a batch: ``image_emb`` ``(n, d)`` and ``text_emb`` ``(m, d)`` tensors (any device and float dtype,
        normalised or not), row ``j`` of the texts captioning image ``text_sample[j]`` (default: ``m = n`` and text
        ``i`` captions image ``i``).

        Args:
            image_emb: One row per sample.
            text_emb: One row per caption.
            labels: Optional class of each sample (``n`` integers): V-Measure against classes.
            indices: Optional id of each sample in the dataset (``n`` distinct integers); default: their position in
                the stream (on rank ``r`` of ``w``, ``r + w·position``, the order of a ``DistributedSampler`` without
                shuffling). Give them when ranks split the data otherwise, and with ``total``.
            text_sample: Optional ``m`` row numbers into ``image_emb`` (several captions per image).

        Raises:
            InputError: Shapes that do not match, NaN/inf or zero vectors (named by batch and row), an update after
                :meth:`sync`; nothing of the batch is added then.
        """
        import torch

        if self._synced:
            raise InputError("monitor: update() after sync(): the state already holds every rank's batches",
                             hint="call reset() to start the next evaluation")
        batch = f"monitor: update {self._updates + 1}"
        x, y = (_checked_units(e, f"{batch}, {m}") for e, m in ((image_emb, "image_emb"), (text_emb, "text_emb")))
        if x.shape[1] != y.shape[1] or (self._stats and self._stats["image"][1].shape[0] != x.shape[1]):
            raise InputError(f"{batch}: image and text vectors must keep one dimension, got {x.shape[1]} and "
                             f"{y.shape[1]} (before: {self._stats['image'][1].shape[0] if self._stats else 'none'})")
        owner = _row_numbers(text_sample, y.shape[0], x.shape[0], batch)
        ids = self._ids(indices, x.shape[0], batch)
        lab = None if labels is None else _labels(labels, x.shape[0], batch)
        if self._labelled is not None and self._labelled != (lab is not None):
            raise InputError(f"{batch}: labels were given for some batches and not for others",
                             hint="pass labels= to every update() or to none")
        wanted = self._reservoir.wanted(ids)  # checks the ids before anything is added
        wanted &= bool(self.pairs)  # no pair metric: no sample to keep
        if wanted.any():  # first: it refuses an id already in the sample, before the sums take the batch
            pick = np.flatnonzero(wanted)
            captions = np.flatnonzero(np.isin(owner, pick))
            self._reservoir.add(ids[pick], host_rows(x[torch.as_tensor(pick, device=x.device)]),
                                host_rows(y[torch.as_tensor(captions, device=y.device)]), ids[owner[captions]],
                                None if lab is None else lab[pick])
        self._reservoir.mark_seen(ids)
        for m, u in zip(MODALITIES, (x, y)):
            self._accumulate(m, u)
        paired = x if text_sample is None else x[torch.as_tensor(owner, device=x.device)]  # each caption's image
        true_sum = (paired.double() * y.double()).sum()
        self._true = [self._true[0] + y.shape[0], true_sum if self._true[1] is None else self._true[1] + true_sum]
        self._updates += 1
        self._labelled = lab is not None
        self._seen += x.shape[0]

    def _accumulate(self, m: str, u: Any) -> None:
        """Add a batch of unit vectors to modality ``m``'s count, sum and (when a metric needs it) Gram matrix."""
        u64 = u.to(_state_device(u), dtype=_float64())
        add = [u64.shape[0], u64.sum(0), u64.T @ u64 if self._gram else None]
        st = self._stats.get(m)
        self._stats[m] = add if st is None else [a + b if b is not None else None for a, b in zip(st, add)]

    def _ids(self, indices: Any, n: int, batch: str) -> NDArray[np.int64]:
        if indices is not None:
            ids = host_rows(indices)
            if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
                raise InputError(f"{batch}: indices must be {n} integers (one per image row), got shape "
                                 f"{ids.shape} of {ids.dtype}")
            return ids.astype(np.int64)
        rank, world = _rank_and_world()
        return (self._seen + np.arange(n, dtype=np.int64)) * world + rank

    def compute(self) -> MonitorResult:
        """The metrics of every batch since :meth:`reset` (on this rank; after :meth:`sync`, on every rank).

        Raises:
            InputError: Nothing to compute yet.
        """
        if not self._stats:
            raise InputError("monitor: compute() before any update()", hint="feed a batch with update() first")
        result = MonitorResult()
        result.extras, result.skipped = {"variants": {}}, {}
        if self.linear:
            stats = {name: LinearStats(int(n), host_rows(s), None if g is None else host_rows(g))
                     for name, (n, s, g) in zip(self.modalities, (self._stats[m] for m in MODALITIES))}
            pair = "-".join(self.modalities)
            values, extras = compute_from_stats(stats, {pair: (float(self._true[1]), int(self._true[0]))},
                                                self.linear)
            result.update(values)
            result.skipped.update(extras.pop("skipped"))
            result.extras["variants"].update(extras.pop("variants"))
            result.extras.update(extras)
        self._compute_pairs(result)
        result.update({"monitor/samples": float(self._seen), "monitor/sample_size": float(len(self._reservoir)),
                       "monitor/seed": float(self.seed)})
        return result

    def _compute_pairs(self, result: MonitorResult) -> None:
        """The pair metrics on the kept samples (a metric that needs labels is skipped when none were given)."""
        has_labels = self._reservoir.labels is not None
        asked = [m for m in self.pairs if has_labels or LABELS not in REGISTRY[m].needs]
        for m in set(self.pairs) - set(asked):
            result.skipped[m] = "needs class labels: pass labels= to update()"
        if not asked or len(self._reservoir) < 2:
            for m in asked:
                result.skipped[m] = f"needs at least 2 samples, the monitor kept {len(self._reservoir)}"
            return
        values, extras = compute_all(self._reservoir.embedding_set(self.modalities), asked, seed=self.seed,
                                     device="cpu", strict=False)
        result.update(values)
        result.skipped.update(extras.pop("skipped"))
        result.extras["variants"].update(extras.pop("variants"))
        result.extras.update(extras)

    def sync(self) -> None:
        """Make this rank's state the state of every rank of the default ``torch.distributed`` group (a collective:
        every rank calls it): counts, sums and Gram matrices add up, the samples merge into one draw. Without an
        initialised process group it does nothing; a second call does nothing; :meth:`update` after it is refused.

        Raises:
            InputError: Ranks that disagree on the dimension, or a sample given on two ranks.
        """
        if self._synced:
            return
        merged = merge_ranks(self._stats, self._true, self._reservoir, self._seen)
        if merged is None:
            return
        self._stats, self._true, self._reservoir, self._seen = merged
        self._synced = True


def _float64() -> Any:
    import torch

    return torch.float64


def _state_device(u: Any) -> Any:
    """Where the float64 sums live: the batches' device, except MPS (no float64 there): the CPU."""
    return "cpu" if u.device.type == "mps" else u.device


def _checked_units(e: Any, name: str) -> Any:
    """``e`` as float32 unit rows (the engine's normalisation: norms in float64, division in float32), refused in
    one line when it is not 2-D or holds a row that is not finite or is zero."""
    import torch

    x = torch.as_tensor(e).detach()
    if x.ndim != 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise InputError(f"{name} must be a non-empty (rows, dim) float tensor, got shape {tuple(x.shape)} "
                         f"of {x.dtype}")
    x = x.float()
    norms = x.double().square().sum(1).sqrt() if x.device.type != "mps" else x.square().sum(1).sqrt()
    bad = ~(torch.isfinite(norms) & (norms > 0))
    if bool(bad.any()):  # the one synchronisation of an update
        row = int(torch.nonzero(bad)[0])
        what = "zero" if bool(torch.isfinite(x[row]).all()) else "NaN or infinite"
        raise InputError(f"{name} row {row} is a {what} vector: it has no direction to measure",
                         hint="check the model's outputs for that batch (a diverged loss gives NaN)")
    return x / norms.float()[:, None]


def _row_numbers(text_sample: Any, m: int, n: int, batch: str) -> NDArray[np.int64]:
    if text_sample is None:
        if m != n:
            raise InputError(f"{batch}: {n} image rows and {m} text rows: pass text_sample= (the image row of "
                             "each caption) when an image has several captions")
        return np.arange(n, dtype=np.int64)
    owner = host_rows(text_sample)
    fits = owner.shape == (m,) and np.issubdtype(owner.dtype, np.integer)
    if not (fits and (m == 0 or 0 <= owner.min() <= owner.max() < n)):
        raise InputError(f"{batch}: text_sample must be {m} image row numbers in 0..{n - 1}, got shape "
                         f"{owner.shape} of {owner.dtype}")
    return owner.astype(np.int64)


def _labels(labels: Any, n: int, batch: str) -> NDArray[np.int64]:
    lab = host_rows(labels)
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"{batch}: labels must be {n} integers (one class per image row), got shape {lab.shape} "
                         f"of {lab.dtype}")
    return lab.astype(np.int64)


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
