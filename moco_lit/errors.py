"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into a single line on stderr and exit code 2 (a traceback only with ``--debug``).
Raise it where the bad value enters: a config value, a file, a model path. The message names the
value, what was expected, and how to fix it.
"""

import difflib
import os


class UserError(Exception):
    """Bad input from the user: config, data file, model path, predictions file."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none).

    Library errors often carry pages of detail; a UserError shows only this line.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def load_failure(error: BaseException) -> str:
    """One line on why a model or tokenizer did not load; offline, a Hub name missing from the
    local cache says so instead of the library's advice to check the connection."""
    text = str(error)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if offline and ("couldn't connect" in text or "offline mode" in text or "cached files" in text):
        return (
            "not a local folder, and not in the Hugging Face cache (offline); give a local folder, "
            "or a short name from `python -m moco_lit models list`"
        )
    return first_line(error)


def did_you_mean(name: str, choices, cutoff: float = 0.75) -> str:
    """``" (did you mean X?)"`` for the closest of ``choices`` to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""
