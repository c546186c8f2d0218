"""`python -m dbops.cli ...`: the same as the `dbops` command."""

import sys

from dbops.cli import main

sys.exit(main())
