#!/usr/bin/env python3
"""Turn the benchmark CSVs into the Markdown report (docs/benchmarks.md) and
print it. Called by tests/bench/run.sh; the hand-written part of the report
is tests/bench/notes.md, appended as it is."""

import argparse
import csv
import datetime
import os
import platform
import subprocess
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CASES = ["mailbox", "tagged", "alias", "multi", "catchall", "unknown", "domain", "userinfo", "credentials"]
SINGLE = ["mailbox", "alias", "multi", "domain", "userinfo", "credentials"]  # one request per op for mailtable
CASE_TEXT = {
    "mailbox": "alias: mailbox `u@d`",
    "tagged": "alias: mailbox `u+tag@d`",
    "alias": "alias: alias, 1 target",
    "multi": "alias: alias, 2-4 targets",
    "catchall": "alias: catch-all `x@d`",
    "unknown": "alias: unknown `x@d`",
    "domain": "domain (check)",
    "userinfo": "userinfo",
    "credentials": "credentials",
}


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def machine(run_dir):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
    osname = ""
    if os.path.exists("/etc/os-release"):
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')

    def load(name):
        p = os.path.join(run_dir, name)
        return open(p).read().strip().split("load average:")[-1].strip() if os.path.exists(p) else "?"

    rootfs = os.environ.get("E2E_ROOTFS", "")
    ct = ""
    if rootfs:
        ct = sh("chroot", rootfs, "dpkg-query", "-W", "-f", "${Package} ${Version}, ",
                "opensmtpd-table-sqlite", "libsqlite3-0").rstrip(", ")
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    i = lock.find('name = "libsqlite3-sys"')
    sys_ver = lock[i:].split("\n")[1].split('"')[1] if i >= 0 else "?"
    cf = os.path.join(run_dir, "commit")
    if os.path.exists(cf):
        commit, dirty = open(cf).read().strip(), ""
    else:
        commit = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
        dirty = sh("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no")
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores (`nproc`: {sh('nproc')})"),
        ("RAM", mem),
        ("Kernel", f"{platform.release()} ({osname})"),
        ("Load average before / after the run", f"{load('load-before')} / {load('load-after')}"),
        ("mailtable", f"commit {commit}{' + uncommitted changes' if dirty else ''}; {sh('rustc', '--version')}; "
                      f"bundled SQLite of libsqlite3-sys {sys_ver}"),
        ("Host packages (imsg side, Dovecot)",
         sh("dpkg-query", "-W", "-f", "${Package} ${Version}, ", "opensmtpd", "opensmtpd-extras",
            "libsqlite3-0", "dovecot-core", "dovecot-sqlite", "dovecot-auth-lua").rstrip(", ")),
        ("Container packages (text side, Debian 13)", ct or "?"),
    ]


def fnum(x):
    x = float(x)
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fratio(x):
    return f"{x:,.0f}×" if x >= 10 else f"{x:.2f}×"


def ratio(a, b):
    return float(a) / float(b) if b and float(b) > 0 else float("nan")


def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--dovecot-csv")
    ap.add_argument("--run-dir", default=".")
    ap.add_argument("--sizes", default="1k,100k,1m")
    ap.add_argument("--secs", default="1")
    ap.add_argument("--elapsed", default="?")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    sizes = a.sizes.split(",")

    R = {}
    for r in csv.DictReader(open(a.csv)):
        R[(r["protocol"], r["table"], r["size"], r["case"])] = r
    protos = [p for p in ("imsg", "text") if any(k[0] == p for k in R)]

    def get(p, t, s, c):
        return R.get((p, t, s, c))

    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("Written by `tests/bench/run.sh` on %s (%s s for the whole run). Every figure comes from one "
      "run on one machine, so the comparisons hold even though absolute speeds drift between "
      "machines and runs. The CSV files next to this page hold every measurement "
      "(`benchmarks.csv`: smtpd side, `benchmarks-dovecot.csv`: Dovecot side)."
      % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), a.elapsed))
    w("")
    w("## Machine")
    w("")
    w(md_table(["", ""], machine(a.run_dir)))
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w(f"tests/bench/run.sh --sizes {a.sizes} --secs {a.secs}")
    w("```")
    w("")
    w("which, per size, runs (paths shortened; `$B` = the database directory):")
    w("")
    w("```sh")
    w("python3 tests/bench/gen.py --users N --db $B/users-SIZE.db --group dovecot   # cached in $B")
    w("target/release/examples/table_bench --proto imsg|text --size SIZE --keys $B/users-SIZE.db.keys \\")
    w(f"    --cases floor,{','.join(CASES)} --secs {a.secs} --rounds 20 \\")
    w("    --csv benchmarks.csv --warm-file $B/users-SIZE.db --spec tables-PROTO-SIZE.tsv")
    w("tests/bench/dovecot.sh SIZE $B/users-SIZE.db benchmarks-dovecot.csv SECS")
    w("```")
    w("")
    w("where `tables-PROTO-SIZE.tsv` lists the tables run side by side (label, cases, process to "
      "measure, minimum ops, command; tab-separated), e.g. for the text protocol:")
    w("")
    w("```")
    w("mailtable  *,floor  -             3  target/release/table-mailtable mailtable-SIZE.toml")
    w("echo       floor    -             3  target/release/examples/echo_table")
    w("c-indexed  *        table-sqlite  3  tests/e2e/container.sh ROOTFS --bind $B -- /usr/libexec/opensmtpd/table-sqlite sqlite-indexed-SIZE.conf")
    w("c-article  *        table-sqlite  3  tests/e2e/container.sh ROOTFS --bind $B -- /usr/libexec/opensmtpd/table-sqlite sqlite-article-SIZE.conf")
    w("```")
    w("")
    w("(imsg: the same with the host's `/usr/libexec/opensmtpd/table-sqlite` run directly).")
    w("")
    w("The C table configs are `tests/bench/sqlite-article.conf` and `tests/bench/sqlite-indexed.conf`. "
      "An operation (op) is what smtpd asks for one recipient or one check: for the `alias` cases the "
      "virtual walk (`u+tag@d`, `u@d`, `u+tag`, `u`, `@d`, `@`) up to the first key answered, so "
      "`req/op` requests; every other case is one request. Latencies are per op, in µs; ops/s is "
      "the median of 20 slices per table, the tables taking turns. Each table gets `--secs` "
      "seconds per case after a short warm-up, with the database file in the page cache "
      "(\"cached in memory\").")
    w("")

    # ---------------------------------------------------------------- targets
    w("## Targets")
    w("")
    targets = []
    big = sizes[-1]
    for p in protos:
        rs = []
        for c in CASES:
            m, art = get(p, "mailtable", big, c), get(p, "c-article", big, c)
            if m and art:
                rs.append((c, ratio(m["ops_per_s"], art["ops_per_s"])))
        if rs:
            scans = [(c, x) for c, x in rs if c != "domain"]
            lo = min(scans, key=lambda t: t[1])
            targets.append((f"{p}: at {big} users, ≥ 100× the article setup's ops/s (cases whose article query scans: all but domain)",
                            "met" if lo[1] >= 100 else "MISSED",
                            f"lowest {fratio(lo[1])} ({lo[0]}); " + ", ".join(f"{c} {fratio(x)}" for c, x in rs)))
    for p in protos:
        misses, n = [], 0
        for s in sizes:
            for c in CASES:
                m, ci = get(p, "mailtable", s, c), get(p, "c-indexed", s, c)
                if m and ci:
                    n += 1
                    x = ratio(m["ops_per_s"], ci["ops_per_s"])
                    if x < 1:
                        misses.append(f"{s} {c} {x:.2f}×")
        if n:
            targets.append((f"{p}: ≥ C table-sqlite with indexed queries, every size and case",
                            "met" if not misses else f"MISSED in {len(misses)} of {n}",
                            "misses (mailtable ÷ c-indexed): " + ", ".join(misses) if misses else f"all {n} cases ≥ 1×"))
    for p in protos:
        parts, worst = [], 0.0
        for s in sizes:
            e, mf, mb = get(p, "echo", s, "floor"), get(p, "mailtable", s, "floor"), get(p, "mailtable", s, "mailbox")
            if not e or not mf:
                continue
            lp = ratio(mf["p50_us"], e["p50_us"])
            worst = max(worst, lp)
            extra = f", mailbox case {ratio(mb['p50_us'], e['p50_us']):.1f}×" if mb else ""
            parts.append(f"{s}: p50 {mf['p50_us']} vs {e['p50_us']} µs = {lp:.1f}×{extra}; "
                         f"ops/s {fnum(e['ops_per_s'])} vs {fnum(mf['ops_per_s'])} = "
                         f"{ratio(e['ops_per_s'], mf['ops_per_s']):.1f}×")
        if parts:
            targets.append((f"{p}: within 2× of the echo floor (one alias lookup of a mailbox, measured in turns "
                            f"with the echo table; judged on p50 latency, see the notes)",
                            "met" if worst <= 2 else f"MISSED (up to {worst:.1f}×)",
                            "mailtable vs echo: " + "; ".join(parts)))
    for p in protos:
        ms = [get(p, "mailtable", big, c) for c in CASES]
        ms = [m for m in ms if m]
        if ms:
            hwm = max(int(m["hwm_kib"]) for m in ms)
            targets.append((f"{p}: table-mailtable resident memory < 20 MB at {big} users",
                            "met" if hwm < 20 * 1024 else "MISSED",
                            f"VmHWM {hwm / 1024:.1f} MiB (VmRSS at the end {int(ms[-1]['rss_kib']) / 1024:.1f} MiB)"))
    D = {}
    if a.dovecot_csv and os.path.exists(a.dovecot_csv):
        for r in csv.DictReader(open(a.dovecot_csv)):
            D[(r["backend"], r["size"], r["kind"], r["depth"])] = r
    if D:
        depths = sorted({k[3] for k in D}, key=int)
        for be in ("dict", "lua"):
            parts, ok = [], True
            for s in sizes:
                for d in depths:
                    m, q = D.get((be, s, "user", d)), D.get(("sql", s, "user", d))
                    if m and q:
                        x = ratio(m["ops_per_s"], q["ops_per_s"])
                        ok = ok and x >= 1
                        parts.append(f"{s} depth {d}: {x:.2f}×")
            if parts:
                targets.append((f"serve ({be}) userdb lookups ≥ Dovecot's own sqlite driver",
                                "met" if ok else "MISSED", "serve ÷ sql: " + ", ".join(parts)))
    w(md_table(["target", "verdict", "figures"], targets))
    w("")

    # ---------------------------------------------------------------- smtpd tables
    for p in protos:
        w(f"## smtpd side: {'imsg v2 (OpenSMTPD ≤ 7.5, C table from opensmtpd-extras 6.7.1)' if p == 'imsg' else 'text 0.1 (OpenSMTPD ≥ 7.6, C table opensmtpd-table-sqlite 1.0.1 in the Debian 13 container)'}")
        w("")
        for s in sizes:
            rows = []
            for c in CASES:
                m, ci, art = get(p, "mailtable", s, c), get(p, "c-indexed", s, c), get(p, "c-article", s, c)
                if not m:
                    continue
                row = [CASE_TEXT[c], m["req_per_op"], f"**{fnum(m['ops_per_s'])}**", m["p50_us"], m["p99_us"]]
                row += [fnum(ci["ops_per_s"]), ci["p50_us"], ci["p99_us"]] if ci else ["–"] * 3
                row += [fnum(art["ops_per_s"]), art["p50_us"]] if art else ["–"] * 2
                row += [f"{ratio(m['ops_per_s'], ci['ops_per_s']):.2f}×" if ci else "–",
                        fratio(ratio(m['ops_per_s'], art['ops_per_s'])) if art else "–"]
                found = "/".join(f"{float(x['found_pct']):.0f}" if x else "–" for x in (m, ci, art))
                errs = "/".join(x["errors"] if x else "–" for x in (m, ci, art))
                row += [found, errs]
                rows.append(row)
            if not rows:
                continue
            w(f"### {p}, {s} users")
            w("")
            e, mf = get(p, "echo", s, "floor"), get(p, "mailtable", s, "floor")
            if e and mf:
                w(f"Floor, measured in turns with the tables below: one alias lookup of a mailbox key, the echo "
                  f"table (answers not-found at once) **{fnum(e['ops_per_s'])} ops/s** (p50 {e['p50_us']}, "
                  f"p99 {e['p99_us']} µs), table-mailtable {fnum(mf['ops_per_s'])} ops/s (p50 {mf['p50_us']}, "
                  f"p99 {mf['p99_us']} µs): {ratio(e['ops_per_s'], mf['ops_per_s']):.1f}× the floor's cost.")
                w("")
            w(md_table(["case", "req/op", "mailtable ops/s", "p50", "p99", "c-indexed ops/s", "p50", "p99",
                        "c-article ops/s", "p50", "mt ÷ c-indexed", "mt ÷ article", "found % mt/idx/art",
                        "errors"], rows))
            w("")

    # ---------------------------------------------------------------- memory
    w("## Resident memory of the table process")
    w("")
    w("VmHWM (peak) and VmRSS (after the last case) from `/proc/PID/status`, MiB.")
    w("")
    rows = []
    for p in protos:
        for t in ("mailtable", "c-indexed", "c-article", "echo"):
            for s in sizes:
                ms = [get(p, t, s, c) for c in CASES + ["floor"]]
                ms = [m for m in ms if m]
                if ms:
                    rows.append([p, t, s, f"{max(int(m['hwm_kib']) for m in ms) / 1024:.1f}",
                                 f"{int(ms[-1]['rss_kib']) / 1024:.1f}"])
    w(md_table(["protocol", "table", "users", "VmHWM", "VmRSS"], rows))
    w("")

    # ---------------------------------------------------------------- dovecot
    if D:
        w("## Dovecot side (2.3, auth-master socket)")
        w("")
        w("`USER` (userdb, service lmtp: what LMTP delivery asks) and `PASS` (passdb lookup without "
          "a password, as `doveadm auth lookup`) over one auth-master connection, DEPTH requests in "
          "flight (1: one at a time; 8: eight sessions at once), existing users. Auth cache off. "
          "ops/s, p50/p99 µs.")
        w("")
        depths = sorted({k[3] for k in D}, key=int)
        backends = [b for b in ("sql", "dict", "dict-idle", "lua", "checkpassword") if any(k[0] == b for k in D)]
        label = {"sql": "Dovecot sql (sqlite)", "dict": "serve: dict", "dict-idle": "serve: dict, idle_msecs=60000 (variant)",
                 "lua": "serve: Lua HTTP", "checkpassword": "checkpassword"}
        for s in sizes:
            rows = []
            for b in backends:
                row = [label[b]]
                for kind in ("user", "pass"):
                    for d in depths:
                        r = D.get((b, s, kind, d))
                        row.append(f"{fnum(r['ops_per_s'])} ({r['p50_us']}/{r['p99_us']})"
                                   + (f" {r['fails']} fail" if r and r["fails"] != "0" else "") if r else "–")
                rows.append(row)
            if any(any(c != "–" for c in r[1:]) for r in rows):
                w(f"### Dovecot, {s} users")
                w("")
                w(md_table(["backend"] + [f"{k} depth {d}" for k in ("USER", "PASS") for d in depths], rows))
                w("")
        mem = os.path.join(a.run_dir, "benchmarks-dovecot-serve-mem.csv")
        if os.path.exists(mem):
            parts = []
            for line in open(mem):
                f = line.strip().split(",")
                if len(f) == 4:
                    parts.append(f"{f[1]}: VmHWM {int(f[3]) / 1024:.1f} MiB")
            w("`dovecot-mailtable serve` memory after the Dovecot runs: " + "; ".join(parts) + ".")
            w("")

    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes):
        w(open(notes).read().rstrip())
        w("")
    text = "\n".join(out)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
