import sys

from drumlayer.loops.analyze import main

sys.exit(main())
