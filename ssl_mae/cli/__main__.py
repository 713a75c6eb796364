"""``python -m ssl_mae.cli``: the ``ssl-mae`` command."""

import sys

from ssl_mae.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
