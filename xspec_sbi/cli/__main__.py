"""``python -m xspec_sbi.cli``: the same as the ``xspec-sbi`` command."""
import sys

from xspec_sbi.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
