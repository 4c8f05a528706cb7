"""Views of a record: the live dashboard (ipywidgets + one plotly FigureWidget), its static PNG and HTML export.

Plotting libraries are imported lazily inside these modules; ``import nbdiag`` never needs them.
"""
