"""Real-browser tests: JupyterLab started by the tests, driven by Playwright in Debian's Chromium."""
