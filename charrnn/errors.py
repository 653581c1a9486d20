"""The one user-facing error type, and how an exception is shown in one line."""


class CharrnnError(Exception):
    """A user-facing error: the message says what is wrong and what to do.

    The CLI prints it as one ``Error: ...`` line on stderr and exits 1;
    library users can catch it like any exception.
    """


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if it has none), cut at
    ``limit`` characters: what an ``Error:`` line quotes of a library's long error."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class CharrnnWarning(UserWarning):
    """What a library call warns of (a damaged checkpoint passed over for an older one,
    prime characters left out, ...): the ``warnings`` category of the Python API, which
    also logs each warning on the ``charrnn`` logger (docs/python.md, "Messages")."""
