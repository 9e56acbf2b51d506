"""A fake ``xl`` that applies Xen's L3 CAT rules to a JSON state, for running generated scripts.

Both the apply/rollback scripts of `advise cat` (tests/test_plan_script.py) and the sweep
scripts of `calibrate` (tests/test_calibrate.py) run under ``sh`` against it. It answers
``xl domname ID`` from ``names``, and ``xl psr-cat-set``/``psr-cat-cbm-set [-s S] [-c|-d]
DOMID MASK`` like Xen does: a mask must be one non-empty contiguous run within ``cbm_len``
(``Invalid input``), the distinct non-default settings of a socket must fit ``budget``
(``no free COS available``); ``-c``/``-d`` set one half of a CDP pair. Every call is logged
as a JSON argv line. Failures to inject: ``fail_at`` (the n-th set fails) and ``fail`` (sets
whose ``" ".join(argv)`` is listed fail).

State (``XL_STATE``): ``{"names": {"5": "db"}, "masks": {"SOCKET:DOMID": [code, data]},
"cbm_len": 11, "budget": 15, "sets": 0, "fail_at": null, "fail": []}``.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""\
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["XL_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    path = os.environ["XL_STATE"]
    st = json.load(open(path))
    if args[0] == "domname":
        name = st["names"].get(args[1])
        if name is None:
            sys.stderr.write("Can't get domain name of domain id '%s', maybe this domain does not exist.\\n"
                             % args[1])
            sys.exit(1)
        sys.stdout.write(name + "\\n")
        sys.exit(0)
    assert args[0] in ("psr-cat-set", "psr-cat-cbm-set"), args
    NO_COS = "libxl: error: libxl_psr.c:123:libxl__psr_alloc_log_err_msg: L3 CAT: no free COS available\\n"
    INVALID = "libxl: error: L3 CAT: Invalid input or some internal values are not expected\\n"
    st["sets"] = st.get("sets", 0) + 1
    if st["sets"] == st.get("fail_at"):
        sys.stderr.write(NO_COS)
        json.dump(st, open(path, "w"))
        sys.exit(253)
    if " ".join(args) in st.get("fail", []):
        sys.stderr.write(INVALID)
        sys.exit(253)
    rest, sock, half = args[1:], None, None
    while rest[0].startswith("-"):
        if rest[0] == "-s":
            sock, rest = rest[1], rest[2:]
        else:
            half, rest = rest[0], rest[1:]
    dom, mask = rest
    key = sock + ":" + dom
    code, data = st["masks"][key]
    m = int(mask, 16)
    low = m & -m
    if m <= 0 or m >> st["cbm_len"] or (m + low) & m:
        sys.stderr.write(INVALID)
        sys.exit(253)
    st["masks"][key] = [m, data] if half == "-c" else [code, m] if half == "-d" else [m, m]
    full = (1 << st["cbm_len"]) - 1
    used = {tuple(v) for k, v in st["masks"].items() if k.startswith(sock + ":") and v != [full, full]}
    if len(used) > st.get("budget", 99):
        sys.stderr.write(NO_COS)
        sys.exit(253)
    json.dump(st, open(path, "w"))
""")


def install(tmp_path: Path) -> dict[str, str]:
    """Put the fake on PATH as ``xl`` in ``tmp_path/bin``; returns the environment to run scripts
    with (its call log in ``tmp_path/log``, its state in ``tmp_path/state.json``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    xl = bin_dir / "xl"
    xl.write_text(f"#!{sys.executable}\n" + SCRIPT)
    xl.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "XL_LOG": str(tmp_path / "log"),
            "XL_STATE": str(tmp_path / "state.json")}
