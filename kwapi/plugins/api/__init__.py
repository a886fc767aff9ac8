"""The API plugin: an energy collector behind a REST API and Prometheus metrics."""
