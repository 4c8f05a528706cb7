"""Adapters that run ``nbdiag.watch`` inside training frameworks (imported on demand, never by ``import nbdiag``)."""
