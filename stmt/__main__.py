import sys

from stmt.cli import main

sys.exit(main())
