"""Advisors. Enter: the model's figures and fitted miss curves; leave: plans with reasons and
the exact `xl` commands (CAT masks `cat`, calibration sweeps `calibrate`, migrations
`placement`), checks of today's settings (`check`) and predictions of a plan (`whatif`).

`strategy` allocates one socket's ways; `plan` turns a target into ordered `xl` steps with
their undo (the plan JSON contract, ``docs/plan.md``), `planfile` reads such files back.
Shell scripts are rendered by `rdtadvisor.render.script`.
"""
