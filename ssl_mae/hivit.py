"""``ssl_mae.hivit``: the public home of HiViT and its MAE pretrainer.

The code lives in :mod:`ssl_mae.models.hivit`; this module keeps the documented import path and
re-exports that package's public names (its ``__all__``).
"""

from ssl_mae.models.hivit import *  # noqa: F403
from ssl_mae.models.hivit import __all__ as __all__
