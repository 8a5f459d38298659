"""The release tool ``rolling``: Docker containers, address pools, rollouts (not built yet)."""
