"""``python -m fxprune.cli``."""

from . import main

raise SystemExit(main())
