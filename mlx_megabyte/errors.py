"""The one exception every command turns into a one-line message (see `cli.cli`)."""


class UserError(Exception):
    """Something the user can fix (a missing file, a foreign checkpoint, a bad flag): shown as one line."""
