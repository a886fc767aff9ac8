"""Ceilometer pollsters that read kwapi's REST API (``energy`` and ``power``).

They are loaded by ceilometer-polling from the ``ceilometer.poll.central``
entry points; :mod:`kwapi.ceilometer.options` holds their options.
"""
