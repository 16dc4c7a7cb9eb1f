"""The built-in models: importing this module registers them (one line per model file)."""

from syncopt.models import (
    causal,  # noqa: F401  (registers fcn_causal)
    fcn,  # noqa: F401  (registers fcn, fcn_attn)
    lips,  # noqa: F401  (registers fcn_lips)
    syncnet,  # noqa: F401  (registers syncnet_v2)
    transfer,  # noqa: F401  (registers the two-tower transfer models)
)
