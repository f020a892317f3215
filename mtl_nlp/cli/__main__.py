"""`python -m mtl_nlp.cli` (also `accelerate launch -m mtl_nlp.cli ...`)."""

import sys

from mtl_nlp.cli.parser import main

sys.exit(main())
