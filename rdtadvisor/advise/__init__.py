"""Advisors: what settings each host should have, and why (issue 5: CAT masks).

`rdtadvisor.advise.cbm` is the mask algebra every advisor and plan shares (validity as
Xen checks it, layouts, COS budget, ways <-> bytes). The allocation strategies live in
their own modules beside it; plans (ordered `xl` steps with undo) are built by
`rdtadvisor.plan` and rendered as shell scripts by `rdtadvisor.render.script`.
"""
