import sys

from saferisk.cli import main

sys.exit(main())
