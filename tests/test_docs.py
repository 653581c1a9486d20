"""The README and docs/*.md as user documentation, checked against the real CLI: every command
and option they name exists, the blocks marked runnable still run, every link resolves, and the
README stays a user's first hour (the reference lives in docs/, the dated experiment log in
benchmarks/RESULTS.md).

A fenced block is runnable when its info string says so: ```sh runnable or ```python runnable
(renderers take the first word as the language). Each file's runnable blocks run in file order in
one fresh directory, as a reader following that file would: a copy of the shipped files of data/
and a small trained run at runs/quick (the english_run fixture). sh blocks run under
`bash -e -o pipefail`, python blocks with `python -c`. Mark only blocks that are cheap and need
nothing else.

Options are checked wherever a file names them: in sh blocks (every `charrnn ...` command), and in
the prose's code spans (`charrnn sample -n 5`, `sample --novelty`, or a bare `--top-k`). A bare
option belongs to the command the enclosing heading names ("Evaluating: `charrnn evaluate`"),
else to the one named earlier in its paragraph or list item (not in a table row); with neither,
it must be an option of `charrnn` itself (`-v/--verbose`) or of one of its commands.
`<!-- options: charrnn CMD -->` sets the command for the rest of a section, and
`<!-- options: other ... -->` says its bare options are another program's (pytest's `-n 0`).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
OPTION = re.compile(r"^--?[A-Za-z][-A-Za-z0-9]*")
BARE_OPTION = re.compile(r"^(?:-[A-Za-z]|--[A-Za-z][-A-Za-z0-9]*)$")
SHELL = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"<!--\s*options:\s*(.*?)\s*-->")
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")


def doc_files():
    """The user documentation: README.md and docs/*.md."""
    return [README, *sorted(DOCS.glob("*.md"))]


def rel(path):
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def readme():
    return README.read_text(encoding="utf-8").splitlines()


def section(title, lines=None):
    """(1-based number of the first line after the heading, the lines) of README's `## title`."""
    lines = readme() if lines is None else lines
    assert f"## {title}" in lines, f"README has no section '## {title}'"
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start + 1, lines[start:end]


def code_blocks(lines, first=1, name="README"):
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
        assert j < len(lines), f"{name} line {first + i}: the code block is never closed"
        code = "\n".join(
            line[indent:] if line[:indent].isspace() or not indent else line.lstrip()
            for line in lines[i + 1 : j]
        )
        blocks.append((first + i, info, code + "\n"))
        i = j + 1
    return blocks


@cache
def help_text(*args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, (args, result.output)
    return result.output


@cache
def commands():
    """The subcommands `charrnn --help` lists."""
    listed = help_text().split("Commands:", 1)[1]
    found = re.findall(r"^  ([a-z][-a-z0-9_]*)\s", listed, re.M)
    assert found, help_text()
    return frozenset(found)


def has_option(help_output, option):
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", help_output) is not None


# --- a. the Usage block against --help ----------------------------------------------------


def usage_lines():
    first, lines = section("Usage")
    blocks = code_blocks(lines, first)
    assert len(blocks) == 1, "the Usage section should hold one code block"
    lineno, _, code = blocks[0]
    return [(lineno + 1 + k, line) for k, line in enumerate(code.splitlines()) if line.strip()]


def shell_segments(line):
    """The words of each command of a shell line (split at | & ; < >), `# comments` dropped."""
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
    return segments


def charrnn_commands(line):
    """[(group options, command, command options)] of every `charrnn ...` command on a shell
    line: the first word after `charrnn` that is not an option is the command; words before
    `charrnn` may only set variables (`VAR=x charrnn ...`); the other commands of a pipeline
    (`| jq -s ...`) are not charrnn's."""
    found = []
    for s in shell_segments(line):
        if "charrnn" not in s or not all(
            re.match(r"[A-Za-z_]\w*=", t) for t in s[: s.index("charrnn")]
        ):
            continue
        words = s[s.index("charrnn") + 1 :]
        group = []
        while words and OPTION.match(words[0]):
            group.append(words.pop(0).split("=", 1)[0])
        if not words:
            continue  # `charrnn --help`, or a word in a sentence
        options = [w.lstrip("[(").split("=", 1)[0] for w in words[1:]]
        found.append((group, words[0], [o for o in options if OPTION.match(o)]))
    return found


def parse_usage_line(line):
    """(group options, command, command options) of the one `charrnn ...` command on a line."""
    ours = charrnn_commands(line)
    assert len(ours) == 1, f"expected one charrnn command, got {shell_segments(line)}"
    return ours[0]


def test_usage_block_names_real_commands_and_options():
    group_help = help_text()
    problems, seen = [], set()
    for lineno, line in usage_lines():
        group, command, options = parse_usage_line(line)
        seen.add(command)
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
    assert {"prepare", "train", "sample"} <= seen, seen  # the parse found the commands
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
    used = {parse_usage_line(line)[1] for _, line in usage_lines()}
    missing = sorted(commands() - used)
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
    assert charrnn_commands("pip install -e . && charrnn prepare x --force && charrnn train") == [
        ([], "prepare", ["--force"]),
        ([], "train", []),
    ]
    assert charrnn_commands("pip install charrnn") == []


# --- b. every command and option the docs name exists ------------------------------------


def masked_lines(path):
    """The file's lines with fenced code blanked (so prose scans skip it), and its shell blocks:
    (lines, [(line number of the fence, code)])."""
    lines = path.read_text(encoding="utf-8").splitlines()
    shells, out = [], list(lines)
    for number, info, code in code_blocks(lines, name=rel(path)):
        i = number - 1
        end = i + 1 + code.count("\n")
        out[i : end + 1] = [""] * (end + 1 - i)
        if (info.split() or [""])[0] in SHELL:
            shells.append((number, code))
    return out, shells


def shell_lines(number, code):
    """(line number, logical line) of a shell block: `\\` continuations joined, and a quote
    left open (a JSON TF_CONFIG over two lines) joined with the lines that close it."""
    lines, out, i = code.splitlines(), [], 0
    while i < len(lines):
        start, text = i, lines[i]
        while True:
            if text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i]
                continue
            try:
                shell_segments(text)
            except ValueError:  # no closing quotation
                if i + 1 < len(lines):
                    i += 1
                    text += "\n" + lines[i]
                    continue
                raise
            break
        out.append((number + 1 + start, text))
        i += 1
    return out


def paragraphs(lines):
    """[(line number, text)]: the prose split at blank lines, headings, list items, table rows
    and option markers: the units in which a bare option may lean on a command named before."""
    units, current, start = [], [], 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        new = (
            not stripped
            or line.startswith("#")
            or re.match(r"\s*([-*+]|\d+\.)\s", line)
            or stripped.startswith("|")
            or MARKER.search(line)
        )
        if new and current:
            units.append((start + 1, "\n".join(current)))
            current = []
        if stripped:
            if not current:
                start = i
            current.append(line)
            if line.startswith("#") or stripped.startswith("|") or MARKER.search(line):
                units.append((start + 1, "\n".join(current)))
                current = []
    if current:
        units.append((start + 1, "\n".join(current)))
    return units


def spans(text):
    """(offset, content) of the inline code spans of a paragraph (newlines read as spaces)."""
    return [
        (m.start(), m.group(2).replace("\n", " ").strip())
        for m in re.finditer(r"(`+)(.+?)\1", text, re.S)
    ]


def span_words(content):
    try:
        return [w for s in shell_segments(content) for w in s]
    except ValueError:
        return content.split()


def named_options(path):
    """[(line, command or None or "other", option, how)] for every option the file names, and
    [(line, command)] for every `charrnn COMMAND` it names; command None: one of `charrnn`'s
    own options (before the command), or a bare option with no command around it."""
    lines, shells = masked_lines(path)
    options, named = [], []
    for number, code in shells:
        for lineno, line in shell_lines(number, code):
            for group, command, opts in charrnn_commands(line):
                named.append((lineno, command))
                options += [(lineno, None, o, line.strip()) for o in group]
                options += [(lineno, command, o, line.strip()) for o in opts]
    level_cmd = {}  # heading level -> its command ("other": not charrnn's options)
    level = 0
    for start, text in paragraphs(lines):
        heading = re.match(r"(#{1,6})\s", text)
        marker = MARKER.search(text)
        if heading:
            level = len(heading.group(1))
            level_cmd = {k: v for k, v in level_cmd.items() if k < level}
            found = [c for _, c, _ in (x for s in spans(text) for x in charrnn_commands(s[1]))]
            level_cmd[level] = found[0] if found else None
        elif marker:
            words = marker.group(1).split()
            level_cmd[level] = words[1] if words[:1] == ["charrnn"] else "other"
            if words[:1] == ["charrnn"]:
                named.append((start, words[1]))
            continue
        section_cmd = next(
            (level_cmd[k] for k in sorted(level_cmd, reverse=True) if level_cmd[k]), None
        )
        paragraph_cmd = None
        for offset, content in spans(text):
            lineno = start + text.count("\n", 0, offset)
            words = span_words(content)
            explicit = charrnn_commands(content)
            if not explicit and len(words) > 1 and words[0] in commands():
                opts = [w.split("=", 1)[0] for w in words[1:] if OPTION.match(w)]
                explicit = [([], words[0], opts)] if opts else []
            for group, command, opts in explicit:
                named.append((lineno, command))
                options += [(lineno, None, o, f"`{content}`") for o in group]
                options += [(lineno, command, o, f"`{content}`") for o in opts]
                paragraph_cmd = command
            if explicit or not words:
                continue
            first = words[0].split("=", 1)[0].split("/")
            if not all(BARE_OPTION.match(w) for w in first):
                continue
            bare = first + [w.split("=", 1)[0] for w in words[1:] if BARE_OPTION.match(w)]
            # a table row names many things: its bare options lean only on a heading
            owner = section_cmd or (None if text.lstrip().startswith("|") else paragraph_cmd)
            options += [(lineno, owner, o, f"`{content}`") for o in bare]
    return options, named


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_docs_name_real_commands_and_options(path):
    options, named = named_options(path)
    name, problems = rel(path), []
    everyone = [(), *((c,) for c in sorted(commands()))]
    for lineno, command in named:
        if command not in commands():
            problems.append(f"{name}:{lineno}: `charrnn {command}` is not a command")
    for lineno, command, option, where in options:
        if command == "other" or command not in commands() | {None}:
            continue  # another program's options; a wrong command is reported above
        if command is None and not any(has_option(help_text(*c), option) for c in everyone):
            problems.append(
                f"{name}:{lineno}: {option} is an option of no charrnn command: {where}"
            )
        elif command and not has_option(help_text(command), option):
            problems.append(
                f"{name}:{lineno}: {option} is not in `charrnn {command} --help`: {where}"
            )
    assert not problems, "\n".join(problems)


def test_the_option_check_finds_what_it_should(tmp_path):
    """The checker itself, on a planted file: wrong options are named with file and line."""
    planted = tmp_path / "planted.md"
    planted.write_text(
        "# Sampling: `charrnn sample`\n\n"
        "Use `--top-k` and `--no-such` here; `prepare --min-count 2` is prepare's.\n\n"
        "```sh\ncharrnn evaluate runs/x a.txt --per-line --nope | jq .\n```\n\n"
        "## Other\n\n<!-- options: other -->\n`-n 0` is pytest's.\n\n"
        "# Plain\n\n`charrnn export RUN` without `-o`.\n\n`--wrong` alone.\n",
        encoding="utf-8",
    )
    options, named = named_options(planted)
    assert (3, "sample", "--no-such", "`--no-such`") in options
    assert (3, "prepare", "--min-count", "`prepare --min-count 2`") in options
    assert any(o[:3] == (6, "evaluate", "--nope") for o in options)
    assert (12, "other", "-n", "`-n 0`") in options
    assert (16, "export", "-o", "`-o`") in options
    assert (18, None, "--wrong", "`--wrong`") in options
    assert (6, "evaluate") in named and (16, "export") in named


# --- c. the runnable blocks still run --------------------------------------------------------


def runnable_blocks(path=README):
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = [b for b in code_blocks(lines, name=rel(path)) if "runnable" in b[1].split()[1:]]
    for lineno, info, _ in blocks:
        assert info.split()[0] in ("sh", "python"), f"{rel(path)} line {lineno}: runnable `{info}`?"
    return blocks


@pytest.fixture(scope="module")
def fresh_reader_dir(tmp_path_factory, english_run):
    """A maker of fresh directories as the docs' reader has one: the shipped files of data/
    (not any dataset prepared in this checkout) and a small trained run at runs/quick."""

    def make():
        d = tmp_path_factory.mktemp("reader")
        (d / "data").mkdir()
        for f in (ROOT / "data").iterdir():
            if f.is_file():
                shutil.copy2(f, d / "data" / f.name)
        shutil.copytree(english_run, d / "runs" / "quick")
        return d

    return make


def run_in_order(path, directory):
    env = dict(
        os.environ,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    for lineno, info, code in runnable_blocks(path):
        if info.split()[0] == "sh":
            argv = ["bash", "-e", "-o", "pipefail", "-c", code]
        else:
            argv = [sys.executable, "-c", code]
        p = subprocess.run(
            argv, cwd=directory, env=env, capture_output=True, text=True, timeout=180
        )
        assert p.returncode == 0, (
            f"{rel(path)} line {lineno} (```{info}) failed with exit {p.returncode}:\n"
            f"{code}\n--- stderr:\n{p.stderr[-3000:]}"
        )


def test_runnable_blocks_run_in_order(fresh_reader_dir):
    assert len(runnable_blocks()) >= 3, runnable_blocks()  # the marker is still in use
    reader_dir = fresh_reader_dir()
    run_in_order(README, reader_dir)
    assert (reader_dir / "data" / "korean_constitution" / "vocab.json").exists()
    assert (reader_dir / "quick.html").stat().st_size > 10_000
    size = {f: (reader_dir / f).stat().st_size for f in ("quick.int8.onnx", "quick.onnx")}
    assert size["quick.int8.onnx"] < size["quick.onnx"] / 2, size


@pytest.mark.parametrize(
    "path", [p for p in sorted(DOCS.glob("*.md")) if runnable_blocks(p)], ids=rel
)
def test_docs_runnable_blocks_run_in_order(path, fresh_reader_dir):
    run_in_order(path, fresh_reader_dir())


# --- d. links resolve, and README leads into docs/ ------------------------------------------


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    lines, _ = masked_lines(path)
    return {slug(m.group(1)) for line in lines if (m := re.match(r"#{1,6}\s+(.*)", line))}


def links(path):
    """(line, target) of the file's relative Markdown links, outside code."""
    lines, _ = masked_lines(path)
    found = []
    for i, line in enumerate(lines):
        prose = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if not re.match(r"[a-z]+:", target):
                found.append((i + 1, target))
    return found


@pytest.mark.parametrize("path", [*doc_files(), CONTRIBUTING], ids=rel)
def test_every_link_resolves(path):
    problems = []
    for lineno, target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        where = f"{rel(path)}:{lineno}: [..]({target})"
        if not dest.exists():
            problems.append(f"{where}: {file} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: {dest.name} has no heading #{anchor}")
    assert not problems, "\n".join(problems)


def test_every_doc_is_linked_from_the_readme():
    linked = {t.partition("#")[0] for _, t in links(README)}
    missing = [rel(p) for p in sorted(DOCS.glob("*.md")) if rel(p) not in linked]
    assert not missing, f"README links to no {missing} (add it to README's Documentation)"
    assert "CONTRIBUTING.md" in linked


def test_readme_sections_lead_into_the_docs():
    """Each README section after Usage is a summary with a link to its reference in docs/
    (but the results table, which summarises benchmarks/RESULTS.md)."""
    lines = readme()
    titles = [line[3:] for line in lines if line.startswith("## ")]
    after = titles[titles.index("Usage") + 1 :]
    assert len(after) >= 6, titles
    bare = [
        t
        for t in after
        if t != "Benchmarks" and not any("docs/" in target for _, target in links_in(section(t)[1]))
    ]
    assert not bare, f"README sections without a link into docs/: {bare}"


def links_in(lines):
    return [(0, t) for line in lines for t in re.findall(r"\]\(([^)\s]+)\)", line)]


# --- e. README stays a user's document -------------------------------------------------------


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_no_dated_experiment_logs(path):
    """Dated measurements belong in benchmarks/RESULTS.md; only README's results table (which
    summarises it) carries dates."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path == README:
        first, body = section("Benchmarks")
        lines = lines[: first - 2] + [""] * (len(body) + 1) + lines[first - 1 + len(body) :]
    dated = [
        f"{rel(path)}:{i + 1}: {line.strip()}" for i, line in enumerate(lines) if DATE.search(line)
    ]
    assert not dated, "dated measurements belong in benchmarks/RESULTS.md:\n" + "\n".join(dated)


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
    """`benchmarks/RESULTS.md, 'NAME'` in the README, docs/ or CONTRIBUTING.md names a section
    of RESULTS.md."""
    headings = [
        line[3:]
        for line in RESULTS.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]
    problems = []
    for path in [*doc_files(), CONTRIBUTING]:
        text = " ".join(path.read_text(encoding="utf-8").split())
        names = re.findall(r"benchmarks/RESULTS\.md, '([^']+)'", text)
        if path == README:
            assert names
        problems += [
            f"{rel(path)} points to '{n}', which RESULTS.md has no section for"
            for n in names
            if not any(h.startswith(n) for h in headings)
        ]
    assert not problems, "\n".join(problems)
    _, lines = section("Benchmarks")
    for doc in ("benchmarks/RESULTS.md", "benchmarks/README.md"):
        assert doc in "\n".join(lines) and (ROOT / doc).is_file(), doc


# --- f. CONTRIBUTING.md says the layers tests/test_layering.py holds -------------------------


def test_contributing_lists_the_real_layers():
    from test_layering import LAYERS

    text = CONTRIBUTING.read_text(encoding="utf-8")
    listed = {}
    for row in re.findall(r"^\|\s*(\d)\s*\|(.*)$", text, re.M):
        for name in re.findall(r"`([\w.]+)`", row[1].split("|")[0]):
            listed[name.removeprefix("charrnn.")] = int(row[0])
    wrong = {
        name: (layer, listed.get(name))
        for name, layer in LAYERS.items()
        if listed.get(name) != layer
    }
    assert not wrong, (
        "CONTRIBUTING.md's layer table differs from tests/test_layering.py's LAYERS "
        f"(module: (layer there, layer in CONTRIBUTING.md)): {wrong}"
    )
