"""``python -m seqvcr`` (and ``torchrun -m seqvcr train ...``) run the command line."""

import sys

from seqvcr.cli import main

sys.exit(main())
