"""The wheel: what it ships, what it requires, and that it works away from the checkout.

Scheme: the working tree's ``pyproject.toml``, ``README.md``, ``configs/``, ``fmpretrain/`` and
``data_pipeline/`` are copied to a temporary folder and built into a wheel (``pip wheel
--no-deps --no-build-isolation``, offline). The wheel goes into a fresh virtual environment
(``venv --without-pip``; this environment's pip installs it with ``--python``, ``--no-deps``,
``--no-index``). Its third-party packages come from this environment: a ``.pth`` file points
at a folder of links to this environment's site-packages entries *minus* the packages of the
``train`` and ``ray`` extras (DeepSpeed, WebDataset, W&B, matplotlib, scikit-learn, Ray) and
minus the editable install of fmpretrain. Python runs with ``-I`` from a temporary working
directory, so neither the checkout nor its ``configs/`` folder is reachable.

Proven: the wheel holds every package, the named configurations, the bundled data sets and
the release registry; its base ``Requires-Dist`` leaves out DeepSpeed, Ray and W&B; with only
the base packages importable, descriptors, named configs (``model=small``, the documented
``configs/featurize/demo.yaml`` path), ``fmpretrain --help`` and ``fmpretrain.load`` of a tiny
release (embed, predict) work from the wheel, and a command that needs an extra says so in one
line. Not proven: that pip resolves the base requirements from an index, or the version bounds
(the packages are the ones installed here), nor anything about the extras themselves.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from fmpretrain import extras
from fmpretrain.cli import main
from fmpretrain.config import CONFIG_KINDS, available_configs, named_config, shipped_configs
from fmpretrain.extras import EXTRAS, missing_extra_message
from fmpretrain.models import ModelConfig
from tests.releases import write_finetuned, write_pretrained

REPO = Path(__file__).resolve().parents[1]
#: This environment's pip, offline and quiet.
PIP = (sys.executable, "-m", "pip", "-q", "--no-input", "--disable-pip-version-check")
SOURCES = ("pyproject.toml", "README.md", "configs", "fmpretrain", "data_pipeline")
#: Distribution name of each extra module (the import name differs for scikit-learn).
DIST_OF = {"sklearn": "scikit-learn"}
#: site-packages entries of the extras (import names and distribution folder prefixes).
BLOCKED = {*EXTRAS["all"], "mpl_toolkits", "pylab", "scikit_learn"}


def _dist(requirement: str) -> str:
    """Normalized distribution name of a requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _own_extras(requirement: str) -> set[str]:
    """The extras of ``fmpretrain[a,b]`` (empty for any other requirement)."""
    match = re.fullmatch(r"fmpretrain\[([^\]]*)\]", requirement.replace(" ", ""))
    return set(match.group(1).split(",")) if match else set()


# ---------------------------------------------------------------------------- fast checks
def test_named_configs_resolve_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = shipped_configs()
    assert shipped.resolve() == (REPO / "configs").resolve()  # the checkout's folder, editable
    assert named_config("model", "small") == shipped / "model" / "small.yaml"
    documented = named_config("featurize", "configs/featurize/demo.yaml")
    assert documented == shipped / "featurize" / "demo.yaml"
    assert {"small", "base", "large"} <= set(available_configs("model"))
    mine = tmp_path / "configs" / "model" / "mine.yaml"  # a project's own configs/ folder
    mine.parent.mkdir(parents=True)
    mine.write_text("hidden_channels: 32\nnum_layers: 2\n")
    assert named_config("model", "mine") == Path("configs/model/mine.yaml")
    assert ModelConfig.from_name("mine", {"num_layers": 3}).num_layers == 3
    assert named_config("model", mine) == mine  # a path is taken as given
    with pytest.raises(FileNotFoundError) as err:
        named_config("model", "tiny")
    message = str(err.value)
    assert "\n" not in message and "'tiny'" in message and "'small'" in message
    with pytest.raises(ValueError, match="unknown config kind"):
        named_config("models", "small")


def test_every_shipped_config_loads(tmp_path: Path, monkeypatch) -> None:
    from data_pipeline.config import load_config
    from fmpretrain.config import load_yaml
    from fmpretrain.finetune.config import load_finetune_config
    from fmpretrain.train.config import load_pretrain_config

    monkeypatch.chdir(tmp_path)
    for kind in CONFIG_KINDS:
        for name in available_configs(kind):
            load_yaml(named_config(kind, name))
    for name in available_configs("model"):
        ModelConfig.from_name(name)
    for name in available_configs("featurize"):
        load_config(name, ["out=shards"])
    for name in available_configs("pretrain"):
        load_pretrain_config(name, ["data=shards", "out=run"])
    for name in available_configs("finetune"):
        load_finetune_config(name, ["out=run"])


@pytest.mark.parametrize(
    ("args", "absent", "line"),
    [
        (["pretrain", "data=shards", "out=run"], "deepspeed", ("pretrain", "train")),
        (["export", "run", "--out", "release"], "deepspeed", ("export", "train")),
        (["featurize", "--config", "demo", "out=shards"], "ray", ("featurize", "ray")),
        (["demo", "--quick"], "wandb", ("demo", "all")),
        (["benchmark", "--config", "demo", "out=run"], "matplotlib", ("benchmark", "train")),
    ],
)
def test_a_missing_extra_is_one_line(args, absent, line, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(extras, "is_installed", lambda module: module != absent)
    assert main(args) == 2
    assert capsys.readouterr().err == missing_extra_message(*line) + "\n"
    assert missing_extra_message(*line) == (
        f"fmpretrain {line[0]} needs the '{line[1]}' extra: pip install 'fmpretrain[{line[1]}]'"
    )


def test_only_the_modules_a_run_uses_are_required(monkeypatch, tmp_path) -> None:
    from fmpretrain.cli import build_parser
    from fmpretrain.cli.evaluation import _finetune_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(extras, "is_installed", lambda module: module not in {"wandb", "sklearn"})
    args = ["--config", "demo", "out=run", "wandb.mode=disabled", "baselines=false"]
    cfg = _finetune_config(build_parser().parse_args(["benchmark", *args]))
    assert cfg.out == "run"
    with pytest.raises(extras.MissingExtraError, match="fmpretrain finetune needs the 'train'"):
        _finetune_config(build_parser().parse_args(["finetune", "--config", "demo", "out=run"]))


def test_pyproject_extras_match_the_extras_module() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {_dist(r) for r in project["dependencies"]}
    assert not base & {"deepspeed", "ray", "wandb", "webdataset", "matplotlib", "scikit-learn"}
    optional = project["optional-dependencies"]
    for extra in ("train", "ray"):
        modules = {_dist(DIST_OF.get(m, m)) for m in EXTRAS[extra]}
        assert {_dist(r) for r in optional[extra]} == modules, extra


# ---------------------------------------------------------------------------- the wheel
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the working tree."""
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("building the wheel needs setuptools (pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("wheel")
    src, out = root / "src", root / "dist"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    result = subprocess.run(
        [
            *PIP,
            "wheel",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (whl,) = out.glob("fmpretrain-*.whl")
    return whl


def _metadata(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` entries."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(name).decode())
    return meta.get_all("Requires-Dist") or []


def _extra(requirements: list[str], extra: str) -> set[str]:
    marker = re.compile(rf"""extra\s*==\s*["']{extra}["']""")
    return {r.split(";")[0].strip() for r in requirements if marker.search(r)}


@pytest.mark.slow  # builds a wheel (about a minute with the install)
def test_wheel_ships_every_package_the_configs_and_the_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected = {"fmpretrain/configs/__init__.py", "fmpretrain/releases.json"}
    configs = [p for p in (REPO / "configs").rglob("*.yaml") if "__pycache__" not in p.parts]
    assert {p.parent.name for p in configs} >= {"model", "descriptors", "featurize", "pretrain"}
    expected |= {"fmpretrain/" + p.relative_to(REPO).as_posix() for p in configs}
    datasets = list((REPO / "fmpretrain" / "finetune" / "datasets").glob("*.csv.gz"))
    assert datasets
    expected |= {p.relative_to(REPO).as_posix() for p in datasets}
    releases = REPO / "fmpretrain" / "releases"
    if releases.is_dir():
        expected |= {
            p.relative_to(REPO).as_posix()
            for p in releases.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    for top in ("fmpretrain", "data_pipeline"):  # every module of every package directory
        for init in (REPO / top).rglob("__init__.py"):
            expected |= {
                p.relative_to(REPO).as_posix()
                for p in init.parent.glob("*.py")
                if "__pycache__" not in p.parts
            }
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (pyproject.toml packages / package-data): {missing}"


@pytest.mark.slow  # builds a wheel (about a minute with the install)
def test_base_requirements_leave_out_training_and_ray(wheel: Path) -> None:
    requirements = _metadata(wheel)
    base = {_dist(r) for r in requirements if not re.search(r"extra\s*==", r)}
    heavy = {"deepspeed", "ray", "wandb", "webdataset", "matplotlib", "scikit-learn"}
    assert not base & heavy, f"base requirements pull {sorted(base & heavy)}"
    needed = {"torch", "numpy", "ase", "vesin", "omegaconf", "pyyaml", "safetensors"}
    assert needed | {"torch-geometric", "ijson", "tqdm"} <= base
    train = {_dist(r) for r in _extra(requirements, "train")}
    assert train == {_dist(DIST_OF.get(m, m)) for m in EXTRAS["train"]}  # extras.py in step
    assert {_dist(r) for r in _extra(requirements, "ray")} == {"ray"}
    assert [_own_extras(r) for r in _extra(requirements, "all")] == [{"train", "ray"}]
    dev = _extra(requirements, "dev")
    assert any("all" in _own_extras(r) for r in dev), dev
    assert {"pytest", "pytest-timeout", "ruff"} <= {_dist(r) for r in dev}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the wheel and this environment's base packages only."""
    root = tmp_path_factory.mktemp("venv")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    result = subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-index", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    deps = root / "deps"
    deps.mkdir()
    here = {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    for folder in here:
        for entry in folder.iterdir():
            stem = re.split(r"[-.]", entry.name, maxsplit=1)[0]
            if (
                stem in BLOCKED
                or stem.lower() in {"fmpretrain", "__editable__", "data_pipeline"}
                or entry.name.startswith("__editable")
                or entry.suffix == ".pth"
                or (deps / entry.name).exists()
            ):
                continue
            (deps / entry.name).symlink_to(entry)
    (site / "base_dependencies.pth").write_text(f"{deps}\n")
    return env


def _run(venv: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # builds a wheel (about a minute with the install)
def test_installed_wheel_works_away_from_the_checkout(venv: Path, tmp_path: Path) -> None:
    base = write_pretrained(tmp_path / "releases" / "pretrained")
    finetuned = write_finetuned(tmp_path / "releases" / "finetuned", base)
    work = tmp_path / "work"
    work.mkdir()
    script = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        from pathlib import Path

        venv, repo = Path({str(venv)!r}).resolve(), Path({str(REPO)!r}).resolve()
        assert not any(Path(p).resolve() in (repo, repo / "fmpretrain") for p in sys.path if p)
        import data_pipeline, fmpretrain, fmpretrain.configs
        for module in (fmpretrain, fmpretrain.configs, data_pipeline):
            assert Path(module.__file__).resolve().is_relative_to(venv), module.__file__
        blocked = [m for m in {sorted(EXTRAS["all"])!r} if importlib.util.find_spec(m)]
        assert not blocked, blocked

        from fmpretrain.config import named_config
        from fmpretrain.descriptors import get_descriptor
        from fmpretrain.generate import generate_structures
        from fmpretrain.models import ModelConfig

        paths = [
            named_config("model", "small"),
            named_config("descriptors", "ead"),
            named_config("featurize", "configs/featurize/demo.yaml"),
            named_config("finetune", "demo"),
        ]
        for path in paths:
            assert path.resolve().is_relative_to(venv), path
        small = ModelConfig.from_name("small", {{"num_layers": 2}})
        structures = list(generate_structures(2, seed=0, max_atoms=6))
        x = get_descriptor("ead")(structures[0])
        model = fmpretrain.load({str(base)!r}, device="cpu")
        emb = model.embed(structures)
        pred = fmpretrain.load({str(finetuned)!r}, device="cpu").predict(structures)
        print(json.dumps({{"hidden": small.hidden_channels, "layers": small.num_layers,
                          "fp": list(x.shape), "emb": len(emb), "pred": len(pred)}}))
        """
    )
    result = _run(venv, [str(venv / "bin" / "python"), "-I", "-c", script], work)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hidden"] == 128 and report["layers"] == 2
    assert report["fp"][0] > 0 and report["emb"] == report["pred"] == 2

    cli = str(venv / "bin" / "fmpretrain")
    helped = _run(venv, [cli, "--help"], work)
    assert helped.returncode == 0 and "pretrain" in helped.stdout, helped.stderr[-2000:]
    for args, command, extra in [
        (["pretrain", "data=shards", "out=run"], "pretrain", "train"),
        (["featurize", "--config", "configs/featurize/demo.yaml", "out=x"], "featurize", "ray"),
        (["demo", "--quick"], "demo", "all"),
    ]:
        failed = _run(venv, [cli, *args], work)
        assert failed.returncode == 2, failed.stderr[-2000:]
        assert failed.stderr.strip() == missing_extra_message(command, extra)
