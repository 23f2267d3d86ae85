"""`python -m fastvit_analysis ...` runs the `fastvit-analysis` command (also under torchrun)."""
import sys

from fastvit_analysis.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
