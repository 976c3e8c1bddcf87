"""fmpretrain: pre-train GNNs for materials on cheap per-atom structural fingerprints."""

__version__ = "0.1.0"
