"""`python -m captioner ...` runs the `captioner` command."""
import sys

from captioner.cli import main

sys.exit(main())
