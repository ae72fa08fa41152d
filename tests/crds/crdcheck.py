"""The offline CRD checker now lives in the package, shared with the emulator.

See :mod:`oneie_operator.testing.schema`: one implementation of pruning, defaulting, OpenAPI
and CEL validation, used by these offline tests and by the emulator's server-side validation.
"""

from oneie_operator.testing.repository import CRD_DIR, EXAMPLES_DIR  # noqa: F401
from oneie_operator.testing.schema import *  # noqa: F403
from oneie_operator.testing.schema import REPO  # noqa: F401
