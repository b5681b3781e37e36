"""`python -m trio_bot.cli`: the same as the `trio-bot` command."""

import sys

from trio_bot.cli import main

sys.exit(main())
