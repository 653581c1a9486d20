class CharrnnError(Exception):
    """A user-facing error: the message says what is wrong and what to do.

    The CLI prints it as one ``Error: ...`` line on stderr and exits 1;
    library users can catch it like any exception.
    """
