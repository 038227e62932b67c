"""`python -m captioner.cli` (torchrun uses it)."""
import sys

from captioner.cli.main import main

sys.exit(main())
