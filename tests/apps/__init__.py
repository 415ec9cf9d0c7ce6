"""ASGI apps used by the integration tests (started in real worker processes)."""
