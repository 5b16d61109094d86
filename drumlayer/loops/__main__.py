import sys

from drumlayer.loops.command import main

sys.exit(main())
