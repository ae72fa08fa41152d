"""``python -m oneie_operator`` is ``oneie-operator``."""

import sys

from oneie_operator.cli.main import main

sys.exit(main())
