"""An ASE calculator for fine-tuned property models.

>>> from fmpretrain import Calculator
>>> atoms.calc = Calculator("runs/ft/emt_energy/release/pretrained")  # doctest: +SKIP
>>> atoms.calc.get_property("energy_per_atom", atoms)  # the target's units  # doctest: +SKIP

``implemented_properties`` is ``[target]``, the fine-tuned task's target name (e.g.
``energy_per_atom``, ``e_form``, ``gap pbe``). No ``energy`` alias is added for per-atom
targets: a per-atom or formation energy is not the cell's potential energy, and the model gives
no forces, so ASE tools that need ``energy``/``forces`` (optimizers, MD) are refused clearly by
ASE instead of being fed a wrong quantity. A task whose target *is* named ``energy`` (the
extensive cell energy, ``emt_total_energy``) gets ``atoms.get_potential_energy()`` naturally.
"""

from __future__ import annotations

from typing import Any

from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes

from fmpretrain.api import Model, load

__all__ = ["Calculator"]


class Calculator(_AseCalculator):
    """``atoms.calc = Calculator(model_or_source)``; ``atoms.calc.get_property(target, atoms)``."""

    def __init__(self, model: Model | str, *, device: str | None = None, **kwargs: Any):
        self.model = model if isinstance(model, Model) else load(model, device=device)
        if not self.model.is_finetuned:
            raise ValueError(
                f"{self.model.path} is a pre-trained release without a property head: the "
                "calculator needs a fine-tuned release"
            )
        if self.model.task.get("task_type") != "regression":
            raise ValueError(
                f"{self.model.path} is a classification model: the calculator serves regression "
                "targets only (use model.predict for class labels)"
            )
        self.implemented_properties = [str(self.model.target)]
        super().__init__(**kwargs)

    def calculate(
        self,
        atoms: Any = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        value = float(self.model.predict(self.atoms)[0])
        self.results = {self.implemented_properties[0]: value}
