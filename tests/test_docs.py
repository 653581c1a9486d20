"""The README as user documentation, checked against the real CLI: the Usage block names only
commands and options that exist, the blocks marked runnable still run, and the README stays a
user's document (the dated experiment log lives in benchmarks/RESULTS.md).

A fenced block is runnable when its info string says so: ```sh runnable or ```python runnable
(renderers take the first word as the language). Runnable blocks run in README order in one
fresh directory, as a reader following the README would: a copy of the shipped files of data/
and a small trained run at runs/quick (the english_run fixture). sh blocks run under
`bash -e -o pipefail`, python blocks with `python -c`. Mark only blocks that are cheap and need
nothing else.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MAX_LINES = 800
FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
OPTION = re.compile(r"^--?[A-Za-z][-A-Za-z0-9]*")


def readme():
    return README.read_text(encoding="utf-8").splitlines()


def section(title, lines=None):
    """(1-based number of the first line after the heading, the lines) of README's `## title`."""
    lines = readme() if lines is None else lines
    assert f"## {title}" in lines, f"README has no section '## {title}'"
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start + 1, lines[start:end]


def code_blocks(lines, first=1):
    """[(line number of the opening fence, info string, code)] of the fenced blocks in lines
    (line `first` is lines[0]); an indented block (in a list item) loses its indentation."""
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, info = len(m.group(1)), m.group(2), m.group(3).strip()
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            j += 1
        assert j < len(lines), f"README line {first + i}: the code block is never closed"
        code = "\n".join(
            line[indent:] if line[:indent].isspace() else line.lstrip() for line in lines[i + 1 : j]
        )
        blocks.append((first + i, info, code + "\n"))
        i = j + 1
    return blocks


def help_text(*args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, (args, result.output)
    return result.output


def has_option(help_output, option):
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", help_output) is not None


# --- a. the Usage block against --help ----------------------------------------------------


def usage_lines():
    first, lines = section("Usage")
    blocks = code_blocks(lines, first)
    assert len(blocks) == 1, "the Usage section should hold one code block"
    lineno, _, code = blocks[0]
    return [(lineno + 1 + k, line) for k, line in enumerate(code.splitlines()) if line.strip()]


def parse_usage_line(line):
    """(group options, command, command options) of the `charrnn ...` command on one line: the
    first word after `charrnn` that is not an option is the command; `# comments` and the other
    commands of a pipeline (`| jq -s ...`) are not charrnn's."""
    lex = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
    lex.whitespace_split, lex.commenters = True, "#"
    segments, current = [], []
    for token in lex:
        if token and set(token) <= set("|&;<>"):
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    ours = [
        s
        for s in segments
        if "charrnn" in s and all(re.match(r"[A-Za-z_]\w*=", t) for t in s[: s.index("charrnn")])
    ]  # VAR=x charrnn
    assert len(ours) == 1, f"expected one charrnn command, got {segments}"
    words = ours[0][ours[0].index("charrnn") + 1 :]
    group = []
    while words and OPTION.match(words[0]):
        group.append(words.pop(0).split("=", 1)[0])
    assert words, "no command after charrnn"
    command, rest = words[0], words[1:]
    return group, command, [w.split("=", 1)[0] for w in rest if OPTION.match(w)]


def test_usage_block_names_real_commands_and_options():
    group_help = help_text()
    problems, commands = [], set()
    for lineno, line in usage_lines():
        group, command, options = parse_usage_line(line)
        commands.add(command)
        result = CliRunner().invoke(cli, [command, "--help"])
        if result.exit_code != 0:
            problems.append(f"README line {lineno}: `charrnn {command}` is not a command: {line}")
            continue
        problems += [
            f"README line {lineno}: {o} is not in `charrnn --help`: {line}"
            for o in group
            if not has_option(group_help, o)
        ]
        problems += [
            f"README line {lineno}: {o} is not in `charrnn {command} --help`: {line}"
            for o in options
            if not has_option(result.output, o)
        ]
    assert {"prepare", "train", "sample"} <= commands, commands  # the parse found the commands
    assert not problems, "\n".join(problems)


def test_usage_prose_group_options_exist():
    """The Usage text names the group's options as `-v/--verbose` (before the subcommand)."""
    first, lines = section("Usage")
    pairs = re.findall(r"`(-[A-Za-z])/(--[A-Za-z][-A-Za-z0-9]*)`", "\n".join(lines))
    assert ("-v", "--verbose") in pairs
    group_help = help_text()
    missing = [o for pair in pairs for o in pair if not has_option(group_help, o)]
    assert not missing, f"README, Usage: {missing} not in `charrnn --help`"


def test_every_subcommand_is_in_the_usage_block():
    group_help = help_text()
    listed = group_help.split("Commands:", 1)[1]
    subcommands = re.findall(r"^  ([a-z][-a-z0-9_]*)\s", listed, re.M)
    assert subcommands, group_help
    used = {parse_usage_line(line)[1] for _, line in usage_lines()}
    missing = sorted(set(subcommands) - used)
    assert not missing, f"README's Usage block shows no `charrnn {missing[0]}` (missing: {missing})"


def test_usage_line_parser():
    assert parse_usage_line("cat *.c | charrnn prepare - -o data/linux          # stdin") == (
        [],
        "prepare",
        ["-o"],
    )
    assert parse_usage_line("charrnn evaluate runs/linux app.log --per-line | jq -s '.[:5]'") == (
        [],
        "evaluate",
        ["--per-line"],
    )
    assert parse_usage_line("charrnn -v train --set train.batch_size=32 --max-time=2h") == (
        ["-v"],
        "train",
        ["--set", "--max-time"],
    )
    assert parse_usage_line("TF_CONFIG=x charrnn train --resume") == ([], "train", ["--resume"])


# --- b. the runnable blocks still run --------------------------------------------------------


def runnable_blocks():
    blocks = [b for b in code_blocks(readme()) if "runnable" in b[1].split()[1:]]
    for lineno, info, _ in blocks:
        assert info.split()[0] in ("sh", "python"), f"README line {lineno}: runnable `{info}`?"
    return blocks


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory, english_run):
    """A fresh directory as the README's reader has it: the shipped files of data/ (not any
    dataset prepared in this checkout) and a small trained run at runs/quick."""
    d = tmp_path_factory.mktemp("readme")
    (d / "data").mkdir()
    for f in (ROOT / "data").iterdir():
        if f.is_file():
            shutil.copy2(f, d / "data" / f.name)
    shutil.copytree(english_run, d / "runs" / "quick")
    return d


def test_runnable_blocks_run_in_order(reader_dir):
    blocks = runnable_blocks()
    assert len(blocks) >= 3, blocks  # the marker is still in use
    env = dict(
        os.environ,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    for lineno, info, code in blocks:
        if info.split()[0] == "sh":
            argv = ["bash", "-e", "-o", "pipefail", "-c", code]
        else:
            argv = [sys.executable, "-c", code]
        p = subprocess.run(
            argv, cwd=reader_dir, env=env, capture_output=True, text=True, timeout=180
        )
        assert p.returncode == 0, (
            f"README line {lineno} (```{info}) failed with exit {p.returncode}:\n"
            f"{code}\n--- stderr:\n{p.stderr[-3000:]}"
        )
    assert (reader_dir / "data" / "korean_constitution" / "vocab.json").exists()
    assert (reader_dir / "quick.html").stat().st_size > 10_000


# --- c. README stays a user's document -------------------------------------------------------


def test_readme_is_short():
    n = len(readme())
    assert n < MAX_LINES, (
        f"README.md has {n} lines (limit {MAX_LINES}): dated measurements belong in "
        "benchmarks/RESULTS.md, with a one-line pointer in the README"
    )


def results_table():
    """(the line above the table, header cells, rows of cells) of README's Benchmarks table."""
    _, lines = section("Benchmarks")
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    assert rows and rows == list(range(rows[0], rows[-1] + 1)), "one table in README's Benchmarks"
    cells = [[c.strip() for c in lines[i].strip().strip("|").split("|")] for i in rows]
    above = [line for line in lines[: rows[0]] if line.strip()][-1]
    return above, cells[0], cells[2:]


def test_results_table_commands_exist():
    _, header, rows = results_table()
    assert "command" in header, header
    assert 1 <= len(rows) <= 12, len(rows)
    col = header.index("command")
    for row in rows:
        scripts = re.findall(r"benchmarks/[\w/.-]+\.py", row[col])
        assert scripts, f"README Benchmarks: no benchmarks/...py command beside {row[0]!r}"
        for script in scripts:
            assert (ROOT / script).is_file(), f"README Benchmarks: {script} does not exist"


def test_results_table_figures_come_from_the_log():
    """Every number in the table's result column and in the machine line above it is in
    benchmarks/RESULTS.md: the README summarises the log, it does not measure."""
    above, header, rows = results_table()
    log = RESULTS.read_text(encoding="utf-8")
    numbers = set(re.findall(r"\d[\d,.]*\d|\d", above))
    for row in rows:
        numbers |= set(re.findall(r"\d[\d,.]*\d|\d", row[header.index("result")]))
    missing = sorted(n for n in numbers if n not in log)
    assert not missing, f"README Benchmarks figures not in benchmarks/RESULTS.md: {missing}"


def test_pointers_into_the_log_name_its_sections():
    """`benchmarks/RESULTS.md, 'NAME'` in the README names a section of RESULTS.md."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    names = re.findall(r"benchmarks/RESULTS\.md, '([^']+)'", text)
    assert names
    headings = [
        line[3:]
        for line in RESULTS.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]
    missing = [n for n in names if not any(h.startswith(n) for h in headings)]
    assert not missing, f"README points to sections RESULTS.md does not have: {missing}"
    _, lines = section("Benchmarks")
    for doc in ("benchmarks/RESULTS.md", "benchmarks/README.md"):
        assert doc in "\n".join(lines) and (ROOT / doc).is_file(), doc
