import sys

from ledgerd.service.pgserver.run import main

sys.exit(main())
