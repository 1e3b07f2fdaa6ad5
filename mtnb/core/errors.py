"""The one exception type whose message is meant for the user.

Everything mtnb rejects (bad names, missing files, malformed parameter files) raises
``MtnbError`` with a single line that names the problem and the fix. The command line prints
that line without a traceback; notebooks show it as the cell's error.
"""


class MtnbError(Exception):
    """A problem with the user's input or environment, explained in one line."""
