"""Featurization as a pipeline stage (:mod:`fmpretrain.pipeline`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.config import FeaturizeConfig
from data_pipeline.driver import FeaturizeResult, run_featurize
from data_pipeline.inputs import config_hash, sample_config
from fmpretrain.data.manifest import MANIFEST_NAME, Manifest, verify_inputs
from fmpretrain.pipeline import Stage

log = logging.getLogger(__name__)


@dataclass
class FeaturizeStage(Stage):
    """``run_featurize(cfg)``; done when ``cfg.out`` holds a complete manifest of this
    configuration whose recorded input files are unchanged (no Ray start to find that out)."""

    cfg: FeaturizeConfig
    progress: bool = True
    name: str = "featurize"

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def done(self) -> bool:
        from fmpretrain.descriptors import get_descriptor

        if self.cfg.overwrite or not (self.out / MANIFEST_NAME).exists():
            return False
        manifest = Manifest.load(self.out)
        descriptor = get_descriptor(self.cfg.descriptor, **self.cfg.descriptor_params)
        expected = config_hash(sample_config(self.cfg, descriptor.hash))
        if not manifest.complete or manifest.config_hash != expected:
            return False
        changed = verify_inputs(manifest)
        if changed:
            log.info("featurize: inputs changed since %s was written: %s", self.out, changed[0])
        return not changed

    def run(self) -> FeaturizeResult:
        return run_featurize(self.cfg, progress=self.progress)

    def reuse(self) -> FeaturizeResult:
        manifest = Manifest.load(self.out)
        return FeaturizeResult(self.out, manifest, len(manifest.shards), 0, 0.0)

    def describe(self) -> str:
        sources = ", ".join(self.cfg.labels())
        return f"featurize {sources} with {self.cfg.descriptor} -> {self.out}"
