"""The featurization job: structure sources -> Ray actors -> WebDataset shards + manifest.

Run it with ``python -m data_pipeline --config configs/featurize/demo.yaml out=DIR`` or
``fmpretrain featurize ...`` (same arguments); under ``ray job submit`` it joins the cluster.
"""

from data_pipeline.config import FeaturizeConfig, load_config
from data_pipeline.driver import run_featurize

__all__ = ["FeaturizeConfig", "load_config", "run_featurize"]
