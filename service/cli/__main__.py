import sys

from ledgerd.service.cli import main

sys.exit(main())
