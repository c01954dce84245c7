"""trainer/networks."""
