"""Embedding: a :class:`~gapdiag.data.base.PairedDataset` turned into vectors through the cache.

* :mod:`~gapdiag.embedding.encode`: batched encoding of every modality, committed to the cache chunk by chunk
  (resume after a kill), AMP, progress; no metrics;
* :mod:`~gapdiag.embedding.loader`: the data loader of ``--preprocess device`` (raw bytes to the device);
* :mod:`~gapdiag.embedding.preprocess`: image decoding and the model's transform on tensors, on that device;
* :mod:`~gapdiag.embedding.distributed`: ``torchrun`` ranks sharing the chunks of one cache entry.

The vectors themselves, an :class:`~gapdiag.vectors.EmbeddingSet`, are the record every room passes: they live
on the ground floor (:mod:`gapdiag.vectors`), not here, since the cache and the metrics, which this room
uses, read them too.
"""
