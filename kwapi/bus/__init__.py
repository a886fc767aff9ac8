"""The kwapi bus: message protocol, signing, publisher and receiver.

Nothing here knows about drivers or plugins: drivers publish through
:class:`~kwapi.bus.publisher.Publisher`, plugins consume through
:class:`~kwapi.bus.receiver.Receiver`.
"""
