"""``python -m robustai ...`` (and ``torchrun -m robustai ...``) runs the ``robustai`` command."""

from robustai.cli.main import main

raise SystemExit(main())
