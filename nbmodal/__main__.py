"""``python -m nbmodal``: the ``nbmodal`` command (as ``python -m modal`` is Modal's).

    python -m nbmodal agent status
"""

import sys

from nbmodal.cli import main

sys.exit(main())
