"""attnlab: the Transformer of "Attention Is All You Need", from scratch in PyTorch."""

__version__ = "0.1.0"

from attnlab.runs import load, load_run  # noqa: E402

__all__ = ["__version__", "load", "load_run"]
