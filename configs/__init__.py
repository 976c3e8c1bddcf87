"""The named configurations, shipped with the package as ``fmpretrain.configs``.

``configs/<kind>/<name>.yaml``: ``model``, ``descriptors``, ``featurize``, ``pretrain``,
``finetune``, ``deepspeed``. Resolve one with :func:`fmpretrain.config.named_config`.
"""
