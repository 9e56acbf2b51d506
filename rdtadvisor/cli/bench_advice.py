"""`rdtadvisor bench-advice`: score the CAT baselines (and later the advisor) on a scenario suite."""

from __future__ import annotations

import importlib
import runpy
import time
from pathlib import Path

import click

from rdtadvisor.cli.output import dump_json, format_option, records, text_table
from rdtadvisor.core.errors import ConfigError


@click.command("bench-advice")
@click.option("--suite", "suite_name", default="default", show_default=True, metavar="NAME|FILE.py",
              help="A built-in suite (default, quick) or a Python file defining scenarios() "
                   "(e.g. benchmarks/advice_suite.py).")
@format_option(("text", "json", "csv"), "text")
@click.option("--quick", is_flag=True, help="Run the quick built-in subset (6 small scenarios).")
@click.option("--margin", type=float, default=None, metavar="FRACTION",
              help="Noise margin for 'worse than doing nothing' (default 0.005 = 0.5%).")
@click.option("--advisor", "advisor_specs", multiple=True, metavar="NAME=MODULE:CALLABLE",
              help="Also score this advisor (a callable following rdtadvisor.sim.harness.Advisor), "
                   "once per history mode. Repeatable.")
def command(suite_name: str, fmt: str, quick: bool, margin: float | None,
            advisor_specs: tuple[str, ...]) -> None:
    """Score no partitioning, equal split, UCP lookahead, any --advisor and the exhaustive optimum.

    Every outcome is the truth model's (weighted speedup, worst slowdown, unfairness, sockets
    over their bandwidth threshold); "% opt" is relative to the exhaustive optimum within the
    scenario's COS budget, "vs none" to no partitioning.
    """
    from rdtadvisor.sim import fitted, scoring, suite
    from rdtadvisor.sim.advisors import advisor as advise_cat

    if quick:
        scenarios = suite.quick()
    elif suite_name in suite.BUILTIN:
        scenarios = suite.BUILTIN[suite_name]()
    else:
        scenarios = _load_suite(Path(suite_name))
    advisors = {fitted.LABEL: fitted.ucp_on_fitted,  # the reference every advisor must beat
                "advise cat": advise_cat}   # rdtadvisor's own CAT advisor
    advisors.update(_load_advisor(spec) for spec in advisor_specs)
    started = time.perf_counter()
    results = scoring.run_suite(scenarios, advisors)
    summary = scoring.summarise(results, **({} if margin is None else {"margin": margin}))
    elapsed = time.perf_counter() - started
    if fmt == "json":
        click.echo(dump_json({"scenarios": results.to_dict(orient="records"),
                              "summary": records(summary), "seconds": round(elapsed, 2)}),
                   nl=False)
    elif fmt == "csv":
        click.echo(results.to_csv(index=False), nl=False)
    else:
        click.echo(text_table(scoring.scenario_table(results)), nl=False)
        click.echo()
        click.echo(text_table(scoring.summary_table(summary)), nl=False)
        click.echo(f"\n{len(scenarios)} scenarios in {elapsed:.1f} s")


def _load_advisor(spec: str):
    name, sep, target = spec.partition("=")
    module, colon, attr = target.partition(":")
    if not (sep and colon and name and module and attr):
        raise click.BadParameter(f"{spec!r} is not NAME=MODULE:CALLABLE", param_hint="--advisor")
    try:
        advisor = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise click.BadParameter(f"cannot load {target!r}: {e}", param_hint="--advisor") from e
    if not callable(advisor):
        raise click.BadParameter(f"{target!r} is not callable", param_hint="--advisor")
    return name, advisor


def _load_suite(path: Path) -> list:
    if not path.is_file():
        raise click.BadParameter(f"no built-in suite or file named {str(path)!r}", param_hint="--suite")
    namespace = runpy.run_path(str(path))
    make = namespace.get("scenarios")
    if not callable(make):
        raise ConfigError(f"{path}: defines no scenarios() function")
    return list(make())
