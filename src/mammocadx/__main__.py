"""``python -m mammocadx`` runs the command line."""
from mammocadx.cli import main

raise SystemExit(main())
