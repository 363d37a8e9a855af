"""How the commands read their options' values and say what is wrong: the types argparse checks a value
with (a real date, a duration), a parser that answers a bad argument in one line, and --help showing
every default. Light: a command answers --help and a bad value with nothing heavier imported."""

from __future__ import annotations

import argparse
import re
from datetime import date, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNITS = {"s": 1, "": 60, "m": 60, "h": 3600}


def iso_date(value: str) -> str:
    """A date option, checked as it is parsed (a bad one is answered before anything loads) and kept
    as the text it was given."""
    if value:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a real date in YYYY-MM-DD form") from None
    return value


def duration(value: str) -> timedelta:
    """'90s', '30m', '2h', or plain minutes."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 90s, 30m or 2h")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


class CommandParser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line (argparse prints the usage first): what is wrong
    and where the options are listed."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")


class ShowDefaults(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help: appended where the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"
