"""One kind of error a user can fix, and the wrapper that turns it into one line and an exit code."""

from __future__ import annotations

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
