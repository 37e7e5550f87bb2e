"""Where moco_lit keeps what it downloads, converts and caches.

Everything lives under one folder, ``$MOCO_LIT_HOME`` (default ``~/.cache/moco_lit``):
``models/`` converted checkpoints, ``data/`` fetched benchmark files, ``generations.sqlite`` the
generation cache, ``quickstart/`` the quickstart's specialists.
"""

import os
from pathlib import Path


def home() -> Path:
    root = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
