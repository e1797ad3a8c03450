"""Run the ``tiktok-reposts`` command: ``python -m tiktok_repost_async --help``."""

from .cli import main

raise SystemExit(main())
