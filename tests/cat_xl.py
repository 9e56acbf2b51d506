"""A fake ``xl`` that applies Xen's L3 CAT rules to a JSON state, for running generated scripts.

Both the apply/rollback scripts of `advise cat` (tests/test_plan_script.py) and the sweep
scripts of `calibrate` (tests/test_calibrate.py) run under ``sh`` against it. It answers
``xl domname ID`` from ``names`` (raw bytes: a name may hold ``surrogateescape`` surrogates
for bytes that are not UTF-8), ``xl psr-cat-show [-l L] [DOMID]`` in Xen's format (``%5d%25s``
then ``%#16llx`` per column; two columns, code then data, on the sockets listed in ``cdp``),
and ``xl psr-cat-set``/``psr-cat-cbm-set [-s S] [-c|-d] DOMID MASK`` like Xen does: a mask
must be one non-empty contiguous run within ``cbm_len`` (``Invalid input``), the distinct
non-default settings of a socket must fit ``budget`` (``no free COS available``);
``-c``/``-d`` set one half of a CDP pair. Every call is logged
as a JSON argv line. Failures to inject: ``fail_at`` (the n-th set fails) and ``fail`` (sets
whose ``" ".join(argv)`` is listed fail).

State (``XL_STATE``): ``{"names": {"5": "db"}, "masks": {"SOCKET:DOMID": [code, data]},
"cbm_len": 11, "budget": 15, "sets": 0, "fail_at": null, "fail": [], "cdp": [0]}``.
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
    def raw(name):
        return name.encode("utf-8", "surrogateescape")
    if args[0] == "domname":
        name = st["names"].get(args[1])
        if name is None:
            sys.stderr.write("Can't get domain name of domain id '%s', maybe this domain does not exist.\\n"
                             % args[1])
            sys.exit(1)
        sys.stdout.buffer.write(raw(name) + b"\\n")
        sys.exit(0)
    if args[0] == "psr-cat-show":
        rest = args[1:]
        level = "3"
        if rest[:1] == ["-l"]:
            level, rest = rest[1], rest[2:]
        only = int(rest[0]) if rest else None
        full = (1 << st["cbm_len"]) - 1
        out = []
        for sock in sorted({int(k.split(":")[0]) for k in st["masks"]}):
            cdp = sock in st.get("cdp", [])
            out.append(b"%-16s: %d\\n" % (b"Socket ID", sock))
            if level == "3":
                out.append(b"%-16s: %uKB\\n" % (b"L3 Cache", 25600))
            out.append(b"%-16s: %#x\\n" % (b"Default CBM", full))
            cols = (b"CBM (code)", b"CBM (data)") if cdp else (b"CBM",)
            out.append(b"%5s%25s" % (b"ID", b"NAME") + b"".join(b"%16s" % c for c in cols) + b"\\n")
            for key, (code, data) in sorted(st["masks"].items(), key=lambda kv: int(kv[0].split(":")[1])):
                s_, d_ = (int(x) for x in key.split(":"))
                if s_ != sock or (only is not None and d_ != only):
                    continue
                name = raw(st["names"].get(str(d_), "(null)"))
                cells = (code, data) if cdp else (data,)
                out.append(b"%5d" % d_ + b" " * max(0, 25 - len(name)) + name
                           + b"".join(b"%#16x" % c for c in cells) + b"\\n")
        sys.stdout.buffer.write(b"".join(out))
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
    xl.write_text(f"#!{sys.executable} -IS\n" + SCRIPT)  # -IS: no site, a faster start
    xl.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "XL_LOG": str(tmp_path / "log"),
            "XL_STATE": str(tmp_path / "state.json")}
