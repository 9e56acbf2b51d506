"""Host names and addresses: checked where they enter, because they reach shells.

A host name travels into commands rdtadvisor emits and into commands Xen builds from them:
``xl migrate DOMAIN HOST`` makes ``exec ssh HOST xl migrate-receive`` and runs it with
``sh -c`` on the source host, as root, so quoting our own command line is not enough. Every
host name and address that can enter such a command is checked where it first enters the
program (the config's ``[[hosts]]``, a hosts file, ``--host``, a replayed capture's
``meta.json``) and again before a plan is written.

Accepted: a DNS name (dot-separated labels of letters, digits, ``-`` and ``_``, none starting
or ending with ``-``; 253 characters at most) or an IPv4 or IPv6 address. None of these
characters means anything to ``sh``.
"""

from __future__ import annotations

import ipaddress
import re

from rdtadvisor.core.errors import ConfigError

_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def is_host(text: str) -> bool:
    """Whether `text` is a DNS host name or an IP address (see the module docstring)."""
    if not isinstance(text, str) or not text or len(text) > 253:
        return False
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    return all(_LABEL.match(label) for label in text.removesuffix(".").split("."))


def check_host(text: str, where: str) -> str:
    """`text` if it is a host name or IP address; else ConfigError naming `where` and the value."""
    if not is_host(text):
        raise ConfigError(f"{where}: {text!r} is not a host name or IP address "
                          "(letters, digits, '-', '_' and dots, or an IP address)")
    return text
