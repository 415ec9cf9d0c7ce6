"""python -m asynccluster"""

import sys

from asynccluster.cli import main

if __name__ == "__main__":
    sys.exit(main())
