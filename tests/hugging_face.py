"""Hugging Face ``transformers`` as a test reference, or a skip that says why it cannot be."""

from types import ModuleType

import pytest


def transformers_or_skip(module_level: bool = False) -> ModuleType:
    """``transformers``, or skip the test (the whole module with ``module_level``) when it is
    not installed or disables its models for this torch: transformers 5 needs torch 2.6, and
    with an older one it imports but every model class raises ImportError when used."""
    transformers = pytest.importorskip("transformers")
    if not transformers.utils.is_torch_available():
        pytest.skip(
            f"transformers {transformers.__version__} does not support this torch "
            '(pip install "transformers<5")',
            allow_module_level=module_level,
        )
    return transformers
