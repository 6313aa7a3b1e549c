"""The integration tests' shared library: the daemon harness (harness), a raw
WebSocket client (rawws) and the /metrics scraper (metrics).

A test program run as `python3 tests/integration/test_x.py` (from any folder)
has tests/integration first on sys.path, so `from lib import harness` finds
this package."""
