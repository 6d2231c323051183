"""What every command shares: one-line errors with exit codes, and help texts that show real defaults."""

from __future__ import annotations

import argparse
import functools
import sys


class UserError(Exception):
    """Something the user can fix (a missing file, a foreign checkpoint, a bad flag): shown as one line."""


def cli(main):
    """Run a command-line `main`: UserError and OS errors print one line and exit 1, Ctrl-C exits 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as error:
            print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
        except OSError as error:  # a full disk, a broken pipe, ...
            print(f"error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        sys.exit(1)

    return wrapper


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends "(default: X)" where an option has a default."""

    def _get_help_string(self, action):
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default in ("", [], argparse.SUPPRESS)
        if not quiet and "default" not in text and action.option_strings:
            text += f" (default: {action.default})"
        return text


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
