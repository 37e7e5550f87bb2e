"""Offline detection: without a route to the Hugging Face Hub, its libraries run in offline mode.

Offline, ``transformers`` and ``datasets`` retry every Hub request with backoff (about 30 s per
model name) before failing. ``detect_offline`` resolves the Hub's host name once (a DNS lookup,
milliseconds) and, when that fails, switches huggingface_hub, transformers and datasets to their
offline mode, saying so in one line: models and datasets then come from local folders and caches
at once, and a name that is in neither fails at once with a line saying so.

Nothing is changed when the user has decided already (``HF_HUB_OFFLINE`` set either way), when a
proxy is configured (the proxy resolves names, not this machine) or when ``HF_ENDPOINT`` names
another host that resolves.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlparse

log = logging.getLogger(__name__)

HUB = "https://huggingface.co"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(endpoint: str | None = None, timeout: float = 2.0) -> bool:
    """Whether the Hub's host name resolves (no request is sent)."""
    host = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or HUB).hostname or "huggingface.co"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


def detect_offline() -> bool:
    """Switch the Hugging Face libraries to offline mode when the Hub cannot be reached; True if so."""
    if "HF_HUB_OFFLINE" in os.environ or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return False
    if hub_reachable():
        return False
    set_offline()
    log.info("no network route to the Hugging Face Hub: offline mode (models and data from local caches)")
    return True


def set_offline() -> None:
    """Offline mode for this process and its children (DDP workers, sandboxed scorers read none)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # the libraries read the variables when imported: those imported already are told directly
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True
        if hasattr(config, "HF_DATASETS_OFFLINE"):
            config.HF_DATASETS_OFFLINE = True
