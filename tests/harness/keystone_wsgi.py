"""Keystone's WSGI application, loadable by gunicorn (``tests.harness.keystone_wsgi:application``).

Keystone parses ``sys.argv`` with oslo.config when it is imported, and would
choke on gunicorn's own arguments: they are removed first. Its configuration
file comes from ``OS_KEYSTONE_CONFIG_FILES``.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402

__all__ = ["application"]
