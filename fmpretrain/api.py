"""The user-facing model API: ``fmpretrain.load(...)`` -> :class:`Model`.

>>> import fmpretrain
>>> model = fmpretrain.load("runs/demo/release")  # doctest: +SKIP
>>> model.embed(atoms)                # [n_structures, hidden] backbone features, mean-pooled
>>> model.fingerprint(atoms)          # per-atom fingerprints, in the descriptor's units
>>> tuned = fmpretrain.load("runs/ft/emt_energy/release/pretrained")  # doctest: +SKIP
>>> tuned.predict(atoms)              # in the target's units (e.g. eV/atom)

Sources (:func:`resolve_release`): a release directory, a registry name or an archive URL
(through :func:`fmpretrain.hub.load_pretrained`: downloaded, verified, cached) and
``hf://org/repo[@revision][/subfolder]`` on the Hugging Face Hub (:func:`resolve_hf`, through
:mod:`fmpretrain.hub.hf`). Every release is checked by THE verifier
(:func:`fmpretrain.release_format.verify_release`) and its weights are read with safetensors
only: nothing is ever unpickled.

Structures: :class:`fmpretrain.Structure`, ``ase.Atoms``, a pymatgen ``Structure`` or
``Molecule`` (duck-typed through ``as_dict()``; pymatgen itself is not needed), a pymatgen
dict, a file path (every structure in it, via :func:`fmpretrain.io.read_structures`), or a
list mixing these. Inference runs in eval mode without gradients, in batches bounded by
``max_atoms`` atoms.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmpretrain.data.scaling import Normalizer
from fmpretrain.release_format import (
    CONFIG,
    KIND_FINETUNED,
    KIND_PRETRAINED,
    WEIGHTS,
    ReleaseError,
    verify_release,
)
from fmpretrain.structures import Structure, validate

__all__ = ["Model", "as_structures", "load", "resolve_hf", "resolve_release"]

logger = logging.getLogger(__name__)

HF_SCHEME = "hf://"
DEFAULT_MAX_ATOMS = 2048


# ============================================================================ sources
def resolve_hf(source: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The verified local directory of an ``hf://org/repo[@revision][/subfolder]`` release.

    The release files are fetched with ``huggingface_hub`` into its cache (``cache_dir``, else
    ``HF_HUB_CACHE``, else ``$HF_HOME/hub``) and checked against the release's own
    ``SHA256SUMS`` (:func:`fmpretrain.hub.hf.download`); ``HF_ENDPOINT``, ``HF_TOKEN`` and
    ``HF_HUB_OFFLINE`` are honoured.
    """
    from fmpretrain.hub.hf import download

    return download(source, cache_dir=cache_dir)


def resolve_release(
    source: str | os.PathLike[str],
    *,
    registry: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local directory of a release: a path, a registry name, a URL or ``hf://...``."""
    text = os.fspath(source)
    if text.startswith(HF_SCHEME):
        return resolve_hf(text, cache_dir=cache_dir)
    path = Path(text).expanduser()
    if "://" not in text:
        if path.is_dir():
            return path
        if path.is_file() and path.name in (WEIGHTS, CONFIG):
            return path.parent
        if not path.exists() and (os.sep in text or text.startswith((".", "~"))):
            raise ReleaseError(path, "no such directory")
    from fmpretrain.hub import load_pretrained  # a registry name, a URL or a local archive

    return load_pretrained(text, registry=registry, cache_dir=cache_dir)


def load(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    max_atoms: int = DEFAULT_MAX_ATOMS,
    registry: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Model:
    """Load a release (pre-trained or fine-tuned) as a :class:`Model` ready for inference.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` (default: CUDA if available). ``max_atoms``:
    atom budget of one inference batch. ``cache_dir``: the download cache (for ``hf://``
    sources, the Hugging Face cache directory).
    """
    path = resolve_release(source, registry=registry, cache_dir=cache_dir)
    return Model.from_release(path, device=device, max_atoms=max_atoms)


# ============================================================================ structures
def as_structures(items: Any) -> list[Structure]:
    """A flat list of :class:`Structure` from any accepted input (see the module docstring)."""
    return list(_iter_structures(items))


def _iter_structures(item: Any) -> Iterator[Structure]:
    if isinstance(item, Structure):
        yield item
    elif isinstance(item, (str, os.PathLike)):
        from fmpretrain.io import read_structures

        yield from read_structures(item)
    elif hasattr(item, "get_atomic_numbers") and hasattr(item, "get_cell"):  # ase.Atoms
        yield Structure.from_ase(item)
    elif hasattr(item, "as_dict") and callable(item.as_dict):  # pymatgen Structure / Molecule
        yield Structure.from_pymatgen_dict(item.as_dict())
    elif isinstance(item, Mapping) and "sites" in item:  # a pymatgen dict
        yield Structure.from_pymatgen_dict(item)
    elif isinstance(item, Iterable) and not isinstance(item, (bytes, Mapping)):
        for sub in item:
            yield from _iter_structures(sub)
    else:
        raise TypeError(
            f"cannot read a structure from {type(item).__name__}: pass fmpretrain.Structure, "
            "ase.Atoms, a pymatgen Structure, a file path or a list of these"
        )


# ============================================================================ model
class Model:
    """A loaded release: ``embed`` always; ``fingerprint`` (pre-trained releases) and
    ``predict`` (fine-tuned releases) when the release holds the matching head."""

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        module: torch.nn.Module,
        *,
        device: str | torch.device | None = None,
        max_atoms: int = DEFAULT_MAX_ATOMS,
    ):
        if max_atoms < 1:
            raise ValueError(f"max_atoms must be at least 1, got {max_atoms}")
        self.path = Path(path)
        self.config = config
        self.kind: str = config.get("kind", KIND_PRETRAINED)
        self.max_atoms = int(max_atoms)
        self.device = _device(device)
        self.module = module.to(self.device).eval()
        self.cutoff = float(config["model"].get("cutoff", module.backbone.cutoff))

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_release(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        max_atoms: int = DEFAULT_MAX_ATOMS,
    ) -> Model:
        """Verify the release in ``path``, rebuild its model and load the weights (strict)."""
        from fmpretrain.finetune.release import model_config_of, read_weights
        from fmpretrain.models import build_fingerprint_model, build_property_model

        verified = verify_release(path)
        path, config = verified.path, verified.config
        model_config = model_config_of(path, config)
        state = read_weights(path)
        if config.get("kind", KIND_PRETRAINED) == KIND_FINETUNED:
            task = config["task"]
            module = build_property_model(model_config, int(task["out_dim"]), task["pooling"])
        else:
            head = [v for k, v in state.items() if k.startswith("head.") and v.ndim == 2]
            if not head:
                raise ReleaseError(path, f"{WEIGHTS} holds no fingerprint head ('head.*')")
            module = build_fingerprint_model(model_config, out_dim=int(head[-1].shape[0]))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ReleaseError(
                path, f"the weights do not fit the model in the config: {err}"
            ) from err
        return cls(path, config, module, device=device, max_atoms=max_atoms)

    # ---------------------------------------------------------------- description
    @property
    def is_finetuned(self) -> bool:
        return self.kind == KIND_FINETUNED

    @property
    def task(self) -> dict[str, Any]:
        """The fine-tuned task (name, target, unit, task_type, pooling, scaling); ``{}`` else."""
        return dict(self.config.get("task") or {})

    @property
    def target(self) -> str | None:
        """The name of the predicted property (fine-tuned releases)."""
        task = self.task
        return task.get("target") or task.get("name") if task else None

    @property
    def unit(self) -> str:
        return str(self.task.get("unit") or "")

    @property
    def descriptor(self) -> dict[str, Any]:
        return dict(self.config.get("descriptor") or {})

    def __repr__(self) -> str:
        what = f"predicts {self.target!r} [{self.unit}]" if self.is_finetuned else "pre-trained"
        return f"Model({str(self.path)!r}, {self.kind}, {what}, device={self.device})"

    # ---------------------------------------------------------------- inference
    def _run(self, structures: list[Structure]) -> Iterator[tuple[list[int], Any, torch.Tensor]]:
        """``(structure indices, batch, per-atom backbone features)`` per batch of graphs."""
        from torch_geometric.data import Batch

        from fmpretrain.data.batching import pack_by_budget
        from fmpretrain.data.graphs import build_graph

        for s in structures:
            validate(s, min_distance=0.0)
        self.module.eval()
        order = pack_by_budget(range(len(structures)), lambda i: (len(structures[i]),),
                               (self.max_atoms,))  # fmt: skip
        for group in order:
            graphs = [
                build_graph(s.numbers, s.positions, s.cell, s.pbc, self.cutoff)
                for s in (structures[i] for i in group)
            ]
            batch = Batch.from_data_list(graphs).to(self.device)
            yield group, batch, self.module.backbone(batch)

    @torch.no_grad()
    def embed(self, structures: Any, per_atom: bool = False) -> np.ndarray | list[np.ndarray]:
        """Backbone features: ``[n_structures, hidden]`` (mean over atoms), or with
        ``per_atom=True`` a list of ``[n_atoms_i, hidden]`` arrays (float32)."""
        items = as_structures(structures)
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        for group, batch, h in self._run(items):
            for k, i in enumerate(group):
                rows = h[batch.ptr[k] : batch.ptr[k + 1]].float().cpu().numpy()
                out[i] = rows if per_atom else rows.mean(axis=0)
        if per_atom:
            return out
        hidden = self.module.backbone.hidden_channels
        return np.stack(out) if out else np.zeros((0, hidden), dtype=np.float32)

    @torch.no_grad()
    def fingerprint(self, structures: Any) -> list[np.ndarray]:
        """The pre-trained head's per-atom fingerprints in the descriptor's units (the
        release normalization undone): a list of ``[n_atoms_i, dim]`` float64 arrays."""
        if self.is_finetuned:
            raise ValueError(
                f"{self.path} is a fine-tuned release: it has a property head, not the "
                "fingerprint head; load the pre-trained release for fingerprints"
            )
        normalizer = Normalizer.from_dict(self.config["normalization"])
        items = as_structures(structures)
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        for group, batch, h in self._run(items):
            y = self.module.head(h).double().cpu().numpy()
            if y.shape[1] != normalizer.dim:
                raise ReleaseError(
                    self.path, f"head has {y.shape[1]} outputs, normalization {normalizer.dim}"
                )
            for k, i in enumerate(group):
                out[i] = normalizer.denormalize_numpy(y[int(batch.ptr[k]) : int(batch.ptr[k + 1])])
        return out

    @torch.no_grad()
    def predict(self, structures: Any, *, proba: bool = False) -> np.ndarray:
        """The fine-tuned property of each structure, in the target's units (float64).

        Classification: the class labels, or with ``proba=True`` ``[n, n_classes]``
        probabilities. A pre-trained-only release refuses (it has no property head).
        """
        if not self.is_finetuned:
            raise ValueError(
                f"{self.path} is a pre-trained release without a property head: fine-tune it "
                "(fmpretrain finetune / benchmark) and load the fine-tuned release to predict; "
                "use embed() or fingerprint() here"
            )
        task = self.task
        classification = task["task_type"] == "classification"
        items = as_structures(structures)
        outputs: list[Any] = [None] * len(items)
        for group, batch, h in self._run(items):
            out = self.module.head(h, batch.batch, batch.num_graphs).double()
            if classification:
                values = out.softmax(-1).cpu().numpy()
            else:
                values = self._destandardize(out.squeeze(-1), batch.natoms).cpu().numpy()
            for k, i in enumerate(group):
                outputs[i] = values[k]
        if not items:
            return np.zeros((0,), dtype=np.float64)
        if not classification:
            return np.asarray(outputs, dtype=np.float64)
        probs = np.stack(outputs)
        if proba:
            return probs
        return np.asarray(task["classes"], dtype=object)[probs.argmax(axis=1)]

    def _destandardize(self, out: torch.Tensor, natoms: torch.Tensor) -> torch.Tensor:
        """``out * std + mean`` (``+ mean * n_atoms`` for per-atom scaling, sum pooling)."""
        scaling = self.task["target_scaling"]
        mean, std = float(scaling["mean"]), float(scaling["std"])
        offset = mean * natoms.to(out.dtype) if scaling.get("per_atom") else mean
        return out * std + offset


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return device
