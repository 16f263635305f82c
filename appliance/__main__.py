"""`python -m appliance` runs the `portico` command."""

from appliance.cli.main import main

raise SystemExit(main())
