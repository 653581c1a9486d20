"""The CLI helpers the test files share: run a command in-process, check how it ended."""

from click.testing import CliRunner

from charrnn.cli import cli


def run(*args, input=None):
    """`charrnn ARGS` through click's CliRunner (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def ok(result):
    assert result.exit_code == 0, (result.stderr, result.exception)
    return result


def error_line(result, only=False):
    """The command failed with exit 1 and an `Error: ...` last line (``only``: and nothing
    else on stderr), no traceback; returns that line."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert not only or len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[-1]
