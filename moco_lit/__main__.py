import sys

from moco_lit.cli import main

if __name__ == "__main__":
    sys.exit(main())
