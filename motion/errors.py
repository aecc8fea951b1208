"""The one exception type the command line turns into a one-line message and exit code 2, its kin, and how
an exception becomes part of such a line."""


class UserError(Exception):
    """A problem with what the user gave us (a path, a file, a flag); the message says how to fix it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after the command has already said what it closed and saved: exit 130 with no more words."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, kill), raised in the main thread: a command stops as on Ctrl-C."""


def first_line(err: BaseException, default: str | None = None) -> str:
    """An exception's first line of text, for a one-line message; when it has none, ``default`` (None: the
    exception type's name)."""
    text = str(err).strip()
    if text:
        return text.splitlines()[0]
    return type(err).__name__ if default is None else default
