import sys

from dbops.cli import main

sys.exit(main())
