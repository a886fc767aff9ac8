"""The one harness of the tests and benchmarks: starting daemons and servers, every wait bounded.

- ``processes``: bounded waits, free and busy ports, short directories, a
  daemon as a subprocess with its log, stopping one bounded, factories that
  close all, a simulator subprocess driven by lines.
- ``bus``: the tests' secret, a real signed publisher, a feed of fresh
  measurements, a verifying subscriber, publishing until a daemon has it.
- ``http``: requests returning any status, a WSGI app served on a free port,
  a recording server.
- ``configs``: the configuration file of each daemon.
- ``daemons``: kwapi-drivers, kwapi-forwarder, kwapi-api and kwapi-rrd started
  on a fresh configuration, or refusing a bad one.
- ``drivers``: a real driver thread in the test process, what it logged.
- ``rrd``: a real rrdcached, storages filled with data, what the files hold.
- ``keystone``: a real Keystone, and kwapi-api behind it
  (``keystone_wsgi``: its WSGI application for gunicorn).
- ``browser``: a headless Chromium driven over the DevTools protocol.
- ``clock``: a clock the test sets.

The fixtures built on them are in ``tests/conftest.py``.
"""
