import sys

from hostdiag.cli import main

sys.exit(main())
