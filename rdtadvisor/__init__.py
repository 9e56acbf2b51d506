"""rdtadvisor: turn Intel RDT counters (Xen's `xl psr-*`) into cache and memory-bandwidth decisions.

Each folder is one stage; data flows down this list and imports only reach back up it
(`docs/architecture.md`; `tests/test_layers.py` keeps it so)::

    core     errors, units, time and the clock, configuration, safe text (used by all)
    cache    mask algebra and cache physics shared by the advisors and the simulator
    xl       xl's text -> records (one parser per command)
    sources  hosts and capture folders -> captures of raw xl output (collect, attach)
    store    captures -> tidy tables -> the Parquet history
    model    tidy tables -> per VM/socket/host figures, classes, neighbours, miss curves
    advise   figures and curves -> plans (CAT masks, sweeps, migrations), checks, what-if
    report   the model and checks -> one plain report dict
    render   plans and reports -> text, Markdown, HTML, Prometheus, shell scripts
    sim      the judges: a simulated fleet, the scoring harness and the baselines
    cli      the `rdtadvisor` command, a thin layer over all of it
"""

__version__ = "0.1.0"
