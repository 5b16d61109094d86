import sys

from drumlayer.studio.server import main

sys.exit(main())
