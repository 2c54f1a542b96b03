"""spikec."""
