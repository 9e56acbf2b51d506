"""The simulator: VMs sharing an L3 cache and memory bandwidth, and what Xen would show of them.

``model`` is the hidden truth (miss curves, the sharing fixed point, bandwidth and speed);
the other modules build fleets from scenarios, step them through time and render what
``xl`` would print. Advisors never see the truth: they are scored on it.
"""
