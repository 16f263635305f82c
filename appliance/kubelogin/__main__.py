"""`python -m appliance.kubelogin`: the credential plugin without the `portico` front end."""

from __future__ import annotations

import sys

from appliance.kubelogin.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
