"""Serve the simulator: `python -m tiktok_repost_async.simulator --help`."""

from ._cli import main

raise SystemExit(main())
