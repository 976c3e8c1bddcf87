"""Pre-training on fingerprints with DeepSpeed, checkpoint/resume, logging and release export."""
