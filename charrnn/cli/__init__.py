"""Command-line interface: parsing and printing only, over the Python API (charrnn.api:
prepare, train, load and the Model's methods) and the libraries it calls.  The API's
messages (the ``charrnn`` logger) are shown on stderr while a command runs
(charrnn.cli.group.messages_to_stderr).

One module per family of commands (data, training, generation, inspection), all on the
one group of charrnn.cli.group, which imports a command's module when it is asked for
(``charrnn.cli.group.COMMANDS``); ``main`` is the console script.
"""

import click

from charrnn.cli.group import cli, info


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        return cli.main(args=argv, prog_name="charrnn", standalone_mode=False) or 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        info("Aborted.")
        return 130
    except KeyboardInterrupt:
        info("Interrupted.")
        return 130
