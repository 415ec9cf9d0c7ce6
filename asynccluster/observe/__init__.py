"""Stats aggregation, Prometheus exposition and the live terminal view."""
