"""Renderers: turn plans and reports into text for people and machines.

`rdtadvisor.render.script`: CAT plans as POSIX shell scripts (apply and rollback) to run
on each Xen host.
"""
