"""Device kernels for the statistics of :mod:`nbdiag.stats` (optional: imported only where they can run)."""
