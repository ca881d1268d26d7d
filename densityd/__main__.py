"""Allow ``python -m densityd``."""

from densityd.cli import main

raise SystemExit(main())
