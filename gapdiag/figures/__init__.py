"""Figures of an embedding space, one module per figure family (matplotlib, imported at their top level).

* :mod:`~gapdiag.figures.common`: palette, markers, headless figures, titles, which samples and pairs to draw
* :mod:`~gapdiag.figures.embedding_map`: the modality-gap map (UMAP/PCA) and its memoised 2-D layout
* :mod:`~gapdiag.figures.similarity`: cosine similarity of true vs non-matching pairs
* :mod:`~gapdiag.figures.spectrum`: singular-value spectra and effective rank
* :mod:`~gapdiag.figures.gap`: the joint set on the gap direction, and the dimensions that carry the gap
* :mod:`~gapdiag.figures.shift`: the embedding-shift experiment of Liang et al. (2022)
* :mod:`~gapdiag.figures.compare`: metric values of several reports side by side
* :mod:`~gapdiag.figures.kinds`: ``--kind`` parsing and building the figures of each kind
* :mod:`~gapdiag.figures.files`: saving figures (atomic, byte-reproducible)

:mod:`gapdiag.plot` re-exports the public names: it is the entry point the api, ``check`` and notebooks use.
"""
