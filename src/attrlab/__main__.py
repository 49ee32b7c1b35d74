"""``python -m attrlab`` is the ``attrlab`` command."""

from .cli import main

raise SystemExit(main())
