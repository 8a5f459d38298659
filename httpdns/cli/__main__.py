"""``python -m httpdns.cli``: the same CLI (the worker supervisor of ``serve`` runs
``python -m httpdns.cli serve ...``)."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
