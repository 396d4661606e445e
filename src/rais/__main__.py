import sys

from rais.cli import main

sys.exit(main())
