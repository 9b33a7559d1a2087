"""gapdiag: diagnose the embedding space of multimodal contrastive models."""

__version__ = "0.1.0"
