"""Models: any checkpoint open_clip can load, resolved for the cache key without building it.

* :mod:`~gapdiag.models.resolving`: ``--model``/``--pretrained`` resolved to a
  :class:`~gapdiag.models.resolving.ModelSpec` (no open_clip import), what the cache key needs;
* :mod:`~gapdiag.models.loading`: a spec built into a :class:`~gapdiag.models.loading.LoadedModel` when vectors must
  be computed;
* :mod:`~gapdiag.models.index`: architecture configs and pretrained-tag facts for the key, read without open_clip;
* :mod:`~gapdiag.models.hub`: the Hugging Face hub, probed once and quietly when there is no network;
* ``configs/``: gapdiag's tiny open_clip configs (``gapdiag-tiny-*``), registered when a model is built.
"""
