"""The judges. Enter: scenarios (TOML) and advisors; leave: the `xl` text a simulated fleet
prints and every plan's true outcome against baselines and the exhaustive optimum.

``model`` is the hidden truth (miss curves, the sharing fixed point, bandwidth and speed);
the other modules build fleets from scenarios, step them through time and render what
``xl`` would print (`measure`), score advisors (`harness`, `scoring`, `baselines`,
`advisors`, `fitted`) and placement (`placement_*`). Advisors never see the truth: they are
scored on it. Nothing below this stage imports it."""
