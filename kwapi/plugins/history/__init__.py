"""kwapi-history: every verified sample of the bus kept in a time-series database.

The ingest side (this package's :mod:`~kwapi.plugins.history.lineprotocol`,
:mod:`~kwapi.plugins.history.store`, :mod:`~kwapi.plugins.history.spool`,
:mod:`~kwapi.plugins.history.writer` and :mod:`~kwapi.plugins.history.metrics`)
writes every sample over the InfluxDB line protocol, batched and gzipped,
keeping on disk what the store does not take; the query side reads it back
through the store's Prometheus-compatible API. See doc/history.rst.
"""
