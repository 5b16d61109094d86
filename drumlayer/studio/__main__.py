import sys

from drumlayer.studio.command import main

sys.exit(main())
