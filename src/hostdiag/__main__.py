import sys

from hostdiag.apps.diag import main

sys.exit(main())
