"""Every shell command in README.md and docs/*.md works as written (the project rule).

Each command of a fenced ``bash``/``sh``/``shell``/``console`` block (``\\`` continuations
joined, ``$ `` prompts and comments dropped, console output skipped, ``&&`` chains split) is
one test, named FILE:LINE (``#K`` for the K-th command of a chain), checked by the rule for its
program in :data:`RULES`:

- ``fmpretrain ...``: a command that runs a stage is run with ``--print-config`` (parse, load
  the config files, apply the overrides with the run's own checks, run nothing), any other
  is parsed as ``main`` parses it; the cheap, offline ones also run for real, as written, in a
  scratch directory that holds the files they read (:func:`test_doc_command_runs_as_written`).
- ``python -m ...`` / ``python benchmarks/...``, launchers (torchrun, deepspeed, srun, ray job
  submit), sbatch and launch scripts, pip, wandb, export: see :data:`RULES`, which also names
  the test that runs each for real.

A command no rule matches fails, naming the file, line and command: add a rule.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from fmpretrain.cli import main, parse_args

pytestmark = pytest.mark.slow  # runs every documented command in a subprocess

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
OPERATORS = {"&&", "||", ";", "|"}


# ------------------------------------------------------------------------------ extraction
@dataclass(frozen=True)
class DocCommand:
    """One simple command of a documented shell line."""

    path: str  # relative to the repository
    line: int  # where the shell line starts
    text: str  # the whole shell line, continuations joined
    argv: tuple[str, ...]  # program and arguments, quotes removed
    env: tuple[tuple[str, str], ...] = ()  # leading VAR=value assignments
    captured: str | None = None  # VAR of `VAR=$(command)`
    part: int = 0  # index in an `&&` chain, 0 when alone
    problem: str | None = None  # shell syntax no rule knows (redirections, subshells, ...)

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}" + (f"#{self.part}" if self.part else "")

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def shell_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, command line) of every command in the fenced shell blocks of ``text``."""
    fence, language, pending, start = None, "", None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        match = FENCE.match(raw)
        if fence is None:
            if match:
                fence, language = match.group(1), match.group(2).lower()
            continue
        if raw.strip().startswith(fence):
            if pending:
                yield start, " ".join(pending)
            fence, pending = None, None
            continue
        if language not in SHELLS:
            continue
        line = raw.strip()
        if pending is None:
            if language == "console":
                if not (line.startswith("$ ") or line == "$"):
                    continue  # output
                line = line[1:].strip()
            if not line or line.startswith("#"):
                continue
            pending, start = [], number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield start, " ".join(pending)
        pending = None


def split_line(path: str, number: int, text: str) -> list[DocCommand]:
    """The simple commands of one shell line (comments dropped, chains split)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    chains: list[list[str]] = [[]]
    for token in lexer:
        if token in OPERATORS:
            chains.append([])
        else:
            chains[-1].append(token)
    commands = []
    for k, tokens in enumerate(chains):
        part = k + 1 if len(chains) > 1 else 0
        captured = None
        substitution = len(tokens) > 2 and tokens[1] == "(" and tokens[-1] == ")"
        if substitution and re.fullmatch(r"[A-Za-z_]\w*=\$", tokens[0]):  # VAR=$(command)
            captured, tokens = tokens[0][:-2], tokens[2:-1]
        env = []
        while tokens and ASSIGNMENT.match(tokens[0]):
            name, value = tokens.pop(0).split("=", 1)
            env.append((name, value))
        odd = [t for t in tokens if t and set(t) <= set("();<>|&")]
        problem = f"shell syntax {odd}" if odd else None
        commands.append(
            DocCommand(path, number, text, tuple(tokens), tuple(env), captured, part, problem)
        )
    return commands


def doc_commands(path: Path) -> list[DocCommand]:
    name = path.relative_to(REPO).as_posix()
    return [
        command
        for number, line in shell_lines(path.read_text())
        for command in split_line(name, number, line)
        if command.argv or command.env
    ]


COMMANDS = [command for path in DOCS for command in doc_commands(path)]


# ---------------------------------------------------------------------------------- context
@dataclass
class Context:
    """What a rule's check gets: an empty scratch directory as the working directory (the
    shipped configs resolve from there) with a private cache, and the CLI in-process."""

    scratch: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def cli(self, argv: list[str]) -> tuple[int, str, str]:
        """``fmpretrain ARGV`` in this process: exit status, stdout, stderr."""
        self.capsys.readouterr()  # what came before (a library's import-time logging)
        try:
            code = main(argv)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        out, err = self.capsys.readouterr()
        return code, out, err

    def subprocess(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        return subprocess.run(
            argv, cwd=self.scratch, env=env, capture_output=True, text=True, timeout=120, **kwargs
        )


@pytest.fixture
def context(tmp_path, monkeypatch, capsys) -> Context:
    scratch = tmp_path / "work"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("FMPRETRAIN_CACHE", str(tmp_path / "cache"))
    return Context(scratch, monkeypatch, capsys)


# ------------------------------------------------------------------------------- fmpretrain
@cache
def print_config_commands() -> frozenset[str]:
    """Sub-commands that take ``--print-config``."""
    import argparse

    from fmpretrain.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(
        name
        for name, parser in sub.choices.items()
        if any("--print-config" in a.option_strings for a in parser._actions)
    )


def check_fmpretrain_argv(argv: list[str], ctx: Context, where: str) -> None:
    """``--help`` runs; a stage's command line passes ``--print-config`` and writes nothing;
    any other command line parses as ``main`` parses it."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or "--help" in argv or "-h" in argv:
        code, out, err = ctx.cli(argv)
        assert code == 0 and "usage:" in out, f"{where}\n{err}"
    elif words[0] in print_config_commands():
        code, out, err = ctx.cli([*argv, "--print-config"])
        assert code == 0, f"{where}\nfmpretrain {shlex.join(argv)} --print-config: {err}"
        assert isinstance(yaml.safe_load(out), dict), out
        assert list(ctx.scratch.iterdir()) == [], f"{where}: --print-config wrote files"
        if words[0] == "featurize":
            check_corpus_names(yaml.safe_load(out))
    else:
        try:
            parse_args(argv)
        except SystemExit as done:
            _, err = ctx.capsys.readouterr()
            raise AssertionError(f"{where}\n{err}") from done
        if words[:2] == ["corpora", "download"]:
            check_corpus_names({"source": {"kind": "corpus", "name": words[2]}})


def check_corpus_names(cfg: dict) -> None:
    """The corpora a featurize configuration (or `corpora download`) names are registered."""
    from fmpretrain.corpora import corpus

    for source in [cfg["source"], *cfg.get("sources", [])]:
        if source["kind"] == "corpus":
            corpus(source["name"])


def check_fmpretrain(command: DocCommand, ctx: Context) -> None:
    for name, value in command.env:
        ctx.monkeypatch.setenv(name, value)
    check_fmpretrain_argv(list(command.argv[1:]), ctx, command.where)


@cache
def shipped_releases() -> frozenset[str]:
    """Releases of the shipped registry that ship with the package (no network)."""
    registry = json.loads((REPO / "fmpretrain" / "releases.json").read_text())
    return frozenset(r["name"] for r in registry["releases"] if "://" not in r["url"])


def runs_for_real(command: DocCommand) -> bool:
    """Cheap, offline and self-contained: run as written as well."""
    if command.argv[:1] != ("fmpretrain",) or command.problem:
        return False
    argv = list(command.argv[1:])
    words = [a for a in argv if not a.startswith("-")]
    if not words or "--help" in argv or "-h" in argv:
        return True
    if words[0] in ("descriptors", "fingerprint") or words[:2] == ["corpora", "list"]:
        return True
    if words[0] == "generate":
        return words[1].isdigit() and int(words[1]) <= 100
    if words[0] == "download":
        return "--list" in argv or (len(words) > 1 and words[1] in shipped_releases())
    return False


def write_inputs(directory: Path) -> None:
    """The files the documented commands read: ``my.cif``, a real shipped structure."""
    from ase.io import write

    from fmpretrain.corpora import corpus_files
    from fmpretrain.io import read_structures

    structure = next(iter(read_structures(corpus_files("perov_5-test")[0])))
    write(directory / "my.cif", structure.to_ase())


# ------------------------------------------------------------------------------- python
@cache
def benchmark_script_parses() -> dict[str, tuple[int, str]]:
    """For every documented ``python benchmarks/X.py ARGS``: (status, stderr) of X's own
    argparse parser on ``--help`` and on ARGS, in one child process that stops each script
    right after it parsed its command line (nothing is benchmarked)."""
    jobs = [
        [c.id, str(REPO / script), args]
        for c in COMMANDS
        if (script := python_script(c)) is not None
        for args in (["--help"], list(c.argv[2:]))
    ]
    child = r"""
import argparse, contextlib, io, json, runpy, sys
class Parsed(Exception):
    pass
parse = argparse.ArgumentParser.parse_args
def parse_only(self, args=None, namespace=None):
    parse(self, args, namespace)
    raise Parsed
argparse.ArgumentParser.parse_args = parse_only
jobs, out, results = json.loads(sys.argv[1]), sys.argv[2], {}
for key, script, args in jobs:
    key = key + (" --help" if args == ["--help"] else "")
    sys.argv, err = [script, *args], io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(script, run_name="__main__")
        results[key] = (1, "ran to the end without parsing its command line")
    except Parsed:
        results[key] = (0, "")
    except SystemExit as done:
        results[key] = (done.code if isinstance(done.code, int) else 1, err.getvalue())
with open(out, "w") as f:
    json.dump(results, f)
"""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "parses.json"
        done = subprocess.run(
            [sys.executable, "-c", child, json.dumps(jobs), str(out)],
            cwd=scratch,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads(out.read_text())
    return {k: tuple(v) for k, v in results.items()}


def python_script(command: DocCommand) -> str | None:
    """``benchmarks/X.py`` of ``python benchmarks/X.py ...``."""
    argv = command.argv
    if len(argv) > 1 and argv[0] in ("python", "python3") and argv[1].startswith("benchmarks/"):
        return argv[1]
    return None


def check_benchmark_script(command: DocCommand, ctx: Context) -> None:
    script = REPO / command.argv[1]
    assert script.is_file(), f"{command.where}: no {command.argv[1]} in the repository"
    assert "parse_args(" in script.read_text(), (
        f"{command.where}: {command.argv[1]} has no argparse command line; add a rule"
    )
    results = benchmark_script_parses()
    for key in (f"{command.id} --help", command.id):
        code, err = results[key]
        assert code == 0, f"{command.where}\n{err.strip()}"


#: ``python -m MODULE``: the CLI command a module hands over to (its ``__main__`` is one line).
ENTRY_POINTS = {"data_pipeline": "featurize", "fmpretrain.train": "pretrain"}


def check_python_module(module: str, args: list[str], ctx: Context, where: str) -> None:
    """``python -m MODULE ARGS``: ``--help`` runs in a child process; an entry point of the
    CLI takes ARGS as its command does."""
    done = ctx.subprocess([sys.executable, "-m", module, "--help"])
    assert done.returncode == 0, f"{where}\npython -m {module} --help: {done.stderr[-2000:]}"
    if module in ENTRY_POINTS:
        check_fmpretrain_argv([ENTRY_POINTS[module], *args], ctx, where)
    else:
        assert module == "pytest", f"{where}: no rule for python -m {module}; add one"


def check_python(command: DocCommand, ctx: Context) -> None:
    argv = list(command.argv)
    assert argv[1] == "-m", f"{command.where}: no rule for this python command; add one"
    check_python_module(argv[2], argv[3:], ctx, command.where)


# ------------------------------------------------------------------------------ launchers
def check_torchrun(command: DocCommand, ctx: Context) -> None:
    from torch.distributed.run import get_args_parser

    ns = get_args_parser().parse_args(list(command.argv[1:]))
    assert ns.module, f"{command.where}: launch the module (-m fmpretrain.train)"
    check_python_module(ns.training_script, ns.training_script_args, ctx, command.where)


def check_deepspeed(command: DocCommand, ctx: Context) -> None:
    from deepspeed.launcher.runner import parse_args as deepspeed_args

    ns = deepspeed_args(list(command.argv[1:]))
    assert ns.module, f"{command.where}: launch the module (--module fmpretrain.train)"
    check_python_module(ns.user_script, ns.user_args, ctx, command.where)


def check_options_in_help(program: str, argv: list[str], where: str) -> None:
    """Every ``--option`` of ``argv`` is one that ``PROGRAM --help`` lists (when installed)."""
    if shutil.which(program) is None:
        return
    listed = subprocess.run([program, "--help"], capture_output=True, text=True).stdout
    for option in (a.split("=")[0] for a in argv if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", listed), (
            f"{where}: {program} has no option {option}"
        )


def check_srun(command: DocCommand, ctx: Context) -> None:
    argv = list(command.argv)
    start = next(i for i, a in enumerate(argv) if a in ("python", "python3"))
    check_options_in_help("srun", argv[1:start], command.where)
    assert argv[start + 1] == "-m", f"{command.where}: no rule for this srun command; add one"
    check_python_module(argv[start + 2], argv[start + 3 :], ctx, command.where)


def check_ray(command: DocCommand, ctx: Context) -> None:
    from ray.dashboard.modules.job.cli import job_cli_group

    assert command.argv[1:3] == ("job", "submit"), f"{command.where}: no rule; add one"
    submit = job_cli_group.commands["submit"]
    params = submit.make_context("submit", list(command.argv[3:])).params
    entrypoint = list(params["entrypoint"])
    assert entrypoint[:2] == ["python", "-m"], f"{command.where}: no rule for {entrypoint}"
    check_python_module(entrypoint[2], entrypoint[3:], ctx, command.where)


# --------------------------------------------------------------------- scripts of launch/
def sbatch_featurize(env: dict[str, str]) -> list[str]:
    """launch/slurm/featurize.sbatch's command line (its last lines)."""
    config = env.get("FMP_CONFIG", "configs/featurize/demo.yaml")
    extra = env.get("FMP_OVERRIDES", "").split()
    return ["featurize", "--config", config, f"out={env['FMP_OUT']}", "workers=1", *extra]


def sbatch_pretrain(env: dict[str, str]) -> list[str]:
    """launch/slurm/_pretrain_node.sh's command line under pretrain.sbatch."""
    config = env.get("FMP_CONFIG", "configs/pretrain/demo.yaml")
    deepspeed = ["--deepspeed-config", env["FMP_DEEPSPEED"]] if env.get("FMP_DEEPSPEED") else []
    extra = env.get("FMP_OVERRIDES", "").split()
    return ["pretrain", "--config", config, *deepspeed, f"out={env['FMP_OUT']}", *extra]


def sbatch_finetune(env: dict[str, str]) -> list[str]:
    """launch/slurm/finetune.sbatch's command line for array task 0."""
    config = env.get("FMP_CONFIG", "configs/finetune/demo.yaml")
    task = env.get("FMP_TASKS", "emt_energy").split()[0]
    folds = env.get("FMP_FOLDS", "5")
    pretrained = [f"pretrained={env['FMP_PRETRAINED']}"] if env.get("FMP_PRETRAINED") else []
    extra = env.get("FMP_OVERRIDES", "").split()
    args = [f"out={env['FMP_OUT']}", f"task={task}", "folds=[0]", f"n_folds={folds}"]
    return ["benchmark", "--config", config, *args, *pretrained, "wandb.mode=offline", *extra]


def ray_submit_featurize(args: list[str]) -> list[str]:
    """launch/ray/submit_featurize.sh hands its arguments to python -m data_pipeline."""
    return ["featurize", "--no-progress", *args]


#: The repository's job scripts: the fmpretrain command line each one runs, from the FMP_*
#: variables (and arguments) the docs give it. Keep in step with the scripts.
SBATCH_SCRIPTS: dict[str, Callable[[dict[str, str]], list[str]]] = {
    "launch/slurm/featurize.sbatch": sbatch_featurize,
    "launch/slurm/pretrain.sbatch": sbatch_pretrain,
    "launch/slurm/finetune.sbatch": sbatch_finetune,
}
#: Other scripts: the variables each needs, and its fmpretrain command line from its arguments.
LAUNCH_SCRIPTS: dict[str, tuple[tuple[str, ...], Callable[[list[str]], list[str]]]] = {
    "launch/ray/submit_featurize.sh": (("RAY_ADDRESS",), ray_submit_featurize),
}


def check_script_variables(script: str, env: dict[str, str], where: str) -> None:
    """The FMP_* variables given to a job script are ones it (or a script beside it) reads."""
    texts = "".join(p.read_text() for p in (REPO / script).parent.iterdir() if p.is_file())
    unread = [name for name in env if name.startswith("FMP_") and name not in texts]
    assert not unread, f"{where}: {script} reads no {unread}"


def check_sbatch(command: DocCommand, ctx: Context) -> None:
    argv = list(command.argv[1:])
    script = next(a for a in argv if not a.startswith("-"))
    options = argv[: argv.index(script)]
    assert (REPO / script).is_file(), f"{command.where}: no {script} in the repository"
    assert script in SBATCH_SCRIPTS, f"{command.where}: add {script} to SBATCH_SCRIPTS"
    check_options_in_help("sbatch", options, command.where)
    env = dict(command.env)
    check_script_variables(script, env, command.where)
    check_fmpretrain_argv(SBATCH_SCRIPTS[script](env), ctx, command.where)


def check_launch_script(command: DocCommand, ctx: Context) -> None:
    script = command.argv[0]
    assert (REPO / script).is_file(), f"{command.where}: no {script} in the repository"
    assert os.access(REPO / script, os.X_OK), f"{command.where}: {script} is not executable"
    assert script in LAUNCH_SCRIPTS, f"{command.where}: add {script} to LAUNCH_SCRIPTS"
    needs, command_line = LAUNCH_SCRIPTS[script]
    missing = [name for name in needs if name not in dict(command.env)]
    assert not missing, f"{command.where}: {script} needs {missing}"
    check_fmpretrain_argv(command_line(list(command.argv[1:])), ctx, command.where)


# ---------------------------------------------------------------------- pip, wandb, export
@cache
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def check_pip(command: DocCommand, ctx: Context) -> None:
    """``pip install .[EXTRAS]`` names extras pyproject.toml defines; ``pip install PKG==V``
    pins what pyproject.toml pins."""
    assert command.argv[1] == "install", f"{command.where}: no rule for pip {command.argv[1]}"
    extras = pyproject()["optional-dependencies"]
    pinned = {r for reqs in [pyproject()["dependencies"], *extras.values()] for r in reqs}
    unknown = []
    for target in (a for a in command.argv[2:] if not a.startswith("-")):
        match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
        if match:
            unknown += [e for e in (match.group(1) or "").split(",") if e and e not in extras]
        elif target not in pinned:
            unknown.append(target)
    assert not unknown, f"{command.where}: pyproject.toml has no extra or requirement {unknown}"


def check_wandb(command: DocCommand, ctx: Context) -> None:
    """``wandb sync RUN/wandb/offline-run-*``: where pre-training writes its offline W&B run."""
    assert command.argv[1] == "sync", f"{command.where}: no rule for wandb {command.argv[1]}"
    for path in command.argv[2:]:
        where = re.fullmatch(r".+/wandb/offline-run-\*", path) is not None
        assert where, f"{command.where}: pre-training writes OUT/wandb/offline-run-*, not {path}"


def check_export(command: DocCommand, ctx: Context) -> None:
    assert all(ASSIGNMENT.match(a) for a in command.argv[1:]), command.where


@dataclass(frozen=True)
class Rule:
    """How the commands of one program are checked, and which test runs them for real."""

    matches: Callable[[DocCommand], bool]
    check: Callable[[DocCommand, Context], None]
    covered_by: str


def program(name: str) -> Callable[[DocCommand], bool]:
    return lambda command: command.argv[:1] == (name,)


RULES = {
    # fmpretrain: --print-config, or parsed; the cheap ones also run for real here.
    "fmpretrain": Rule(
        program("fmpretrain"),
        check_fmpretrain,
        "stages: tests/test_demo.py, tests/data_pipeline/, tests/train/, tests/finetune/; "
        "download/publish: tests/test_hub.py, tests/test_hf.py; predict/embed: tests/test_api.py",
    ),
    # python benchmarks/X.py: X's own parser takes --help and the documented options; the
    # benchmarks themselves are run by hand (docs/benchmarks.md records their results).
    "python benchmarks/": Rule(
        lambda c: python_script(c) is not None, check_benchmark_script, "docs/benchmarks.md"
    ),
    # python -m data_pipeline / fmpretrain.train: --help in a child process, the arguments as
    # `fmpretrain featurize` / `pretrain` (the modules hand over to them; tests/test_cli.py);
    # python -m pytest: --help (the suite is the test).
    "python -m": Rule(
        lambda c: c.argv[:2] in (("python", "-m"), ("python3", "-m")),
        check_python,
        "python -m data_pipeline: tests/launch/ (featurize.sbatch, ray job submit); "
        "python -m fmpretrain.train: tests/train/test_pretrain.py, test_two_nodes.py",
    ),
    # torchrun / deepspeed: the launcher's own parser, then its module's rule.
    "torchrun": Rule(program("torchrun"), check_torchrun, "tests/train/test_two_nodes.py"),
    "deepspeed": Rule(program("deepspeed"), check_deepspeed, "none: its parser, here"),
    # srun: options `srun --help` lists (where Slurm is installed), then python -m's rule.
    "srun": Rule(program("srun"), check_srun, "tests/launch/test_slurm.py"),
    # ray job submit: ray's own option parser, then the entrypoint's rule.
    "ray": Rule(program("ray"), check_ray, "tests/launch/test_ray_job.py"),
    # sbatch SCRIPT: the script exists and reads the FMP_* variables given; options that
    # `sbatch --help` lists; the fmpretrain command line the script builds passes its rule.
    "sbatch": Rule(program("sbatch"), check_sbatch, "tests/launch/test_slurm.py"),
    # launch/ray/submit_featurize.sh ARGS: exists, executable, ARGS as `fmpretrain featurize`.
    "launch/": Rule(
        lambda c: bool(c.argv) and c.argv[0].startswith("launch/"),
        check_launch_script,
        "tests/launch/test_ray_job.py",
    ),
    # pip install: the extras and pins are pyproject.toml's.
    "pip": Rule(program("pip"), check_pip, "tests/test_packaging.py (installs the wheel)"),
    # wandb sync: the offline runs' place.
    "wandb": Rule(program("wandb"), check_wandb, "tests/train/test_pretrain.py (offline run)"),
    # export VAR=value: sets a variable for the next commands; nothing to run.
    "export": Rule(program("export"), check_export, "-"),
}


def rule_for(command: DocCommand) -> Rule | None:
    if command.problem or not command.argv:
        return None
    return next((rule for rule in RULES.values() if rule.matches(command)), None)


# ----------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_doc_command(command: DocCommand, context: Context) -> None:
    rule = rule_for(command)
    if rule is None:
        why = f" ({command.problem})" if command.problem else ""
        pytest.fail(
            f"{command.where}: no rule in tests/test_docs_commands.py says how to test "
            f"{' '.join(command.argv[:1]) or 'this'}{why}; add one to RULES"
        )
    rule.check(command, context)


REAL = [c for c in COMMANDS if runs_for_real(c)]


@pytest.mark.parametrize("command", REAL, ids=[c.id for c in REAL])
def test_doc_command_runs_as_written(command: DocCommand, context: Context) -> None:
    """In a directory with the files the docs' examples read (see :func:`write_inputs`)."""
    write_inputs(context.scratch)
    for name, value in command.env:
        context.monkeypatch.setenv(name, value)
    argv = list(command.argv[1:])
    if command.captured:  # VAR=$(fmpretrain ...): stdout, taken by the shell, is one path
        line = f'{command.captured}=$({shlex.join(command.argv)}); printf %s "${command.captured}"'
        done = context.subprocess(["bash", "-euo", "pipefail", "-c", line])
        assert done.returncode == 0, f"{command.where}\n{done.stderr[-2000:]}"
        assert Path(done.stdout).exists(), f"{command.where}: stdout is not a path: {done.stdout}"
        return
    code, out, err = context.cli(argv)
    assert code == 0, f"{command.where}\n{err}"
    assert out.strip(), f"{command.where}: printed nothing"
    if "--out" in argv:
        written = context.scratch / argv[argv.index("--out") + 1]
        assert written.exists(), f"{command.where}: wrote no {written}"


def test_every_doc_with_shell_blocks_yields_commands() -> None:
    for path in DOCS:
        if re.search(r"^\s*```(bash|sh|shell|console)\s*$", path.read_text(), re.M):
            assert doc_commands(path), path


def test_extraction_of_continuations_prompts_comments_chains_and_output() -> None:
    text = "\n".join(
        [
            "```bash",
            "# a comment line",
            "A=1 fmpretrain pretrain --config x \\",
            "    'k=[1, 2]' out=o   # trailing comment",
            "pip install . && fmpretrain demo",
            "DIR=$(fmpretrain download et-small-ead --no-progress)",
            "```",
            "```python",
            "fmpretrain not-shell",
            "```",
            "```console",
            "$ fmpretrain corpora list",
            "NAME  FORMAT",
            "$ make all > log",
            "```",
        ]
    )
    found = [c for n, line in shell_lines(text) for c in split_line("x.md", n, line)]
    assert [(c.id, " ".join(c.argv), c.env, c.captured) for c in found] == [
        ("x.md:3", "fmpretrain pretrain --config x k=[1, 2] out=o", (("A", "1"),), None),
        ("x.md:5#1", "pip install .", (), None),
        ("x.md:5#2", "fmpretrain demo", (), None),
        ("x.md:6", "fmpretrain download et-small-ead --no-progress", (), "DIR"),
        ("x.md:12", "fmpretrain corpora list", (), None),
        ("x.md:14", "make all > log", (), None),
    ]
    assert found[-1].problem and rule_for(found[-1]) is None  # the redirection: no rule
    unknown = split_line("x.md", 1, "make all")[0]
    assert unknown.problem is None and rule_for(unknown) is None  # a new program: no rule
