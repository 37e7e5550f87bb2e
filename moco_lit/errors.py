"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into a single line on stderr and exit code 2 (a traceback only with ``--debug``).
Raise it where the bad value enters: a config value, a file, a model path. The message names the
value, what was expected, and how to fix it.
"""


class UserError(Exception):
    """Bad input from the user: config, data file, model path, predictions file."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none).

    Library errors often carry pages of detail; a UserError shows only this line.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
