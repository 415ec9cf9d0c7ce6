"""The chaos suite (issue 9) reuses the integration suite's real-cluster fixture."""

from tests.integration.conftest import cluster_factory  # noqa: F401  (a fixture)
