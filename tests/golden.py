"""Golden fixtures: ``tests/fixtures/xl/<command>/<case>.{txt,cmd,json|err}``.

* ``<case>.txt``  captured stdout, byte-exact.
* ``<case>.cmd``  the xl command line as typed (one line), e.g. ``xl psr-cat-show -l 2``.
* ``<case>.json`` the expected ``parse(...).to_dict()``; or
* ``<case>.err``  the expected error: first line is the error class name
  (``ParseError``/``XlReportedError``), the second a substring of its message.

Regenerate a case's ``.json`` only on purpose, then review the diff:
``python -m tests.golden tests/fixtures/xl/psr-cat-show/<case>.txt``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rdtadvisor import xl

FIXTURES = Path(__file__).parent / "fixtures" / "xl"


def cases() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.txt"))


def command_of(case: Path) -> str:
    return case.with_suffix(".cmd").read_text(encoding="utf-8").strip()


def parse_case(case: Path) -> dict:
    # Bytes, not read_text(): universal newlines would hide CRLF captures from the parsers.
    text = case.read_bytes().decode("utf-8", errors="replace")
    return xl.parse(command_of(case), text, source=case.name).to_dict()


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        path = Path(arg)
        out = path.with_suffix(".json")
        out.write_text(json.dumps(parse_case(path), indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")
        print(f"wrote {out}")
