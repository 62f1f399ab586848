import sys

from cococ.cli import main

sys.exit(main())
