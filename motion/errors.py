"""The one exception type the command line turns into a one-line message and exit code 2."""


class UserError(Exception):
    """A problem with what the user gave us (a path, a file, a flag); the message says how to fix it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after the command has already said what it closed and saved: exit 130 with no more words."""
