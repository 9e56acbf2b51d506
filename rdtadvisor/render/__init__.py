"""Renderers. Enter: plans and report dicts; leave: text tables, Markdown, HTML with SVG charts,
Prometheus textfiles and POSIX shell scripts (apply and rollback) to run on each host."""
