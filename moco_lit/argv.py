"""Command-line flags that moco_lit reads before LightningCLI sees the rest (``--seeds``, ``--tasks``),
and the argument parser of the project commands (``score``, ``data``, ``quickstart``, ...)."""

from __future__ import annotations

import argparse

from moco_lit.errors import UserError, did_you_mean


class CommandParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``error:`` line and exit code 2, like the rest."""

    def error(self, message: str):
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            options = [o for action in self._actions for o in action.option_strings]
            unknown = message[len(prefix) :].split()
            flag = next((a.split("=", 1)[0] for a in unknown if a.startswith("-")), "")
            message += did_you_mean(flag, options, cutoff=0.6) if flag else ""
        raise UserError(f"{self.prog}: {message}")


def pop_flag(argv: list[str], flag: str, example: str) -> tuple[list[str], str | None]:
    """``argv`` without ``flag VALUE`` (or ``flag=VALUE``), and that value (None when absent; the
    last one when repeated). ``example`` shows a value in the error line for a missing one."""
    rest, value = [], None
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == flag:
            if index + 1 >= len(argv):
                raise UserError(f"{flag} needs a value, such as {flag} {example}")
            value, index = argv[index + 1], index + 2
            continue
        if arg.startswith(flag + "="):
            value, index = arg.split("=", 1)[1], index + 1
            continue
        rest.append(arg)
        index += 1
    return rest, value


def gives(argv: list[str], *flags: str) -> bool:
    """Whether ``argv`` sets any of ``flags`` (as ``--flag value`` or ``--flag=value``)."""
    return any(a in flags or a.startswith(tuple(f + "=" for f in flags)) for a in argv)
