"""Argument parsers shared by the subcommands (`--set key=value`, JSON-or-file arguments)."""
import argparse
import json
import os


def parse_set(items, error=ValueError):
    """['a.b=1', 'c=true', 'd={"4": 8}'] -> {'a.b': 1, 'c': True, 'd': {'4': 8}} (JSON values,
    falling back to the raw string). Raises `error` naming the malformed item."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise error(f"--set {item!r}: expected FIELD=VALUE, e.g. optim.batch_size=32")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def json_arg(value, name):
    """A JSON string or the path of a JSON file -> the parsed value (None stays None)."""
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value) as f:
            value = f.read()
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not valid JSON (or a JSON file): {e}") from None


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help that shows each option's default (unless it is None/False or the help already says
    it) and keeps the description and the examples (epilog) as written."""

    @staticmethod
    def _shows_default(action) -> bool:
        default = action.default
        return (bool(action.option_strings) and not isinstance(default, bool)
                and default is not None and default is not argparse.SUPPRESS
                and default not in ([], ""))

    def _get_help_string(self, action):
        help_text = action.help or ""
        if self._shows_default(action) and "default" not in help_text.lower():
            help_text += (" " if help_text else "") + "(default: %(default)s)"
        return help_text

    def _format_action(self, action):
        if action.help is None and self._shows_default(action):
            action.help = "(default: %(default)s)"   # options without help still show it
        return super()._format_action(action)
