"""The differential tests need MoCo's own code (``pip install --no-deps modelco==1.1.2`` plus
``tenacity openai scikit-learn``); without it the whole folder skips with one line."""

from __future__ import annotations

import pytest

# importing MoCo's evaluation module takes seconds (torch, transformers, sklearn): once per session
pytest.importorskip(
    "model_collaboration.data.eval",
    reason="MoCo (modelco==1.1.2) is not installed: differential tests against it skipped",
)
