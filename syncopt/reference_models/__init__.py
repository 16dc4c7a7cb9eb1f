"""Reference models; importing this package registers them (one line per model file)."""

from syncopt.reference_models import syncnet  # noqa: F401  (registers syncnet_v2)
from syncopt.reference_models import fcn  # noqa: F401  (registers fcn, fcn_attn)
from syncopt.reference_models import transfer  # noqa: F401  (registers the two-tower transfer models)
from syncopt.reference_models import causal  # noqa: F401  (registers fcn_causal)
from syncopt.reference_models import lips  # noqa: F401  (registers fcn_lips)
