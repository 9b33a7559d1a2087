"""The papers' objectives and experiments: training with their losses, and the embedding shift.

* :mod:`~gapdiag.training.losses`: the contrastive objectives of the modality-gap papers (torch);
* :mod:`~gapdiag.training.train`: training or fine-tuning an open_clip model with one of them (``gapdiag train``);
* :mod:`~gapdiag.training.shift`: Liang et al.'s embedding-shift experiment on embedded vectors (numpy).
"""
