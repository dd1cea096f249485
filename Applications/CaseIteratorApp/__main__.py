"""``python -m CaseIteratorApp`` runs the command line."""

from CaseIteratorApp.cli import main

raise SystemExit(main())
