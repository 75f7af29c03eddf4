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
        R[(r.get("phase", "cold"), r["protocol"], r["table"], r["size"], r["case"])] = r
    protos = [p for p in ("imsg", "text") if any(k[1] == p for k in R)]

    def get(p, t, s, c, phase="cold"):
        return R.get((phase, p, t, s, c))

    def warm(p, t, s, c):
        return R.get(("warm", p, t, s, c))

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
    w("    --csv benchmarks.csv --warm-file $B/users-SIZE.db --spec tables-PROTO-PHASE-SIZE.tsv \\")
    w("    --phase cold|warm --working-set 300 [--fill: warm only]")
    w("tests/bench/dovecot.sh SIZE $B/users-SIZE.db benchmarks-dovecot.csv SECS")
    w("```")
    w("")
    w("where `tables-PROTO-PHASE-SIZE.tsv` lists the tables run side by side (label, cases, process to "
      "measure, minimum ops, command; tab-separated), e.g. for the text protocol:")
    w("")
    w("```")
    w("mailtable  *,floor  -             3  target/release/table-mailtable mailtable-cold-SIZE.toml   # warm: mailtable-SIZE.toml")
    w("echo       floor    -             3  target/release/examples/echo_table")
    w("c-indexed  *        table-sqlite  3  tests/e2e/container.sh ROOTFS --bind $B -- /usr/libexec/opensmtpd/table-sqlite sqlite-indexed-SIZE.conf")
    w("c-article  *        table-sqlite  3  tests/e2e/container.sh ROOTFS --bind $B -- /usr/libexec/opensmtpd/table-sqlite sqlite-article-SIZE.conf   # cold only")
    w("```")
    w("")
    w("(imsg: the same with the host's `/usr/libexec/opensmtpd/table-sqlite` run directly).")
    w("")
    w("**Cold and warm.** Every case is measured twice, in two runs of `table_bench` one after the other:")
    w("")
    w("* **cold**: each case cycles through its 5000 keys from `gen.py` (consecutive operations ask "
      "different keys), the cost of a key asked for the first time. The key files cannot outnumber "
      "table-mailtable's cache at every size (1k users have 1000 mailboxes, the default cache holds "
      "20000 answers), so the cold table-mailtable runs with `cache_entries = 1` "
      "(`mailtable-cold-SIZE.toml`): the cache keeps the last answer only and the walk never asks "
      "a key again in the next request, so no measured lookup is a hit, while every lookup still pays "
      "the cache's miss path and the change check (none while the database file's watch reports "
      "nothing, as here: the file is not written during the run);")
    w("* **warm**: each case repeats a working set of its first 300 keys, as real traffic repeats "
      "recipients. table-mailtable runs with the default cache (`cache_entries = 20000`), first "
      "filled to that bound by asking every key of every case once (`--fill`: 45,000 operations, "
      "more distinct keys than the cache holds), then every working-set key is asked once before "
      "anything is measured: every measured lookup is a cache hit, with no change check while the "
      "database file's watch reports nothing (without a watch: a `stat()` and a 28-byte header read). "
      "The C tables have no cache of their own; for them warm only means "
      "the same rows again (SQLite's page cache); the article's setup is measured cold only.")
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
        misses, n, lo, p50_ok = [], 0, None, 0
        for s in sizes:
            for c in CASES:
                m, ci = get(p, "mailtable", s, c), get(p, "c-indexed", s, c)
                if m and ci:
                    n += 1
                    x = ratio(m["ops_per_s"], ci["ops_per_s"])
                    lat = ratio(ci["p50_us"], m["p50_us"])
                    p50_ok += lat >= 1
                    lo = x if lo is None else min(lo, x)
                    if x < 1:
                        misses.append(f"{s} {c} {x:.2f}× (p50 {lat:.2f}×)")
        if n:
            targets.append((f"cold, {p}: mailtable ≥ C table-sqlite with indexed queries (ops/s), every size and case",
                            "met" if not misses else f"MISSED in {len(misses)} of {n}",
                            ("misses, mailtable ÷ c-indexed in ops/s (in parentheses the same on p50 latency, "
                             "c-indexed's p50 ÷ mailtable's): " + ", ".join(misses) if misses
                             else f"all {n} cases ≥ 1× (lowest {lo:.2f}×)")
                            + f"; on p50 latency mailtable is as fast or faster in {p50_ok} of {n}"))
    for p in protos:
        parts, worst = [], 0.0
        for s in sizes:
            e, mf, mb = warm(p, "echo", s, "floor"), warm(p, "mailtable", s, "floor"), warm(p, "mailtable", s, "mailbox")
            if not e or not mf:
                continue
            lp = ratio(mf["p50_us"], e["p50_us"])
            worst = max(worst, lp)
            extra = f", mailbox case {ratio(mb['p50_us'], e['p50_us']):.2f}×" if mb else ""
            parts.append(f"{s}: p50 {mf['p50_us']} vs {e['p50_us']} µs = {lp:.2f}×{extra}; "
                         f"ops/s echo {fnum(e['ops_per_s'])} vs mailtable {fnum(mf['ops_per_s'])} = "
                         f"{ratio(e['ops_per_s'], mf['ops_per_s']):.2f}× the cost")
        if parts:
            targets.append((f"warm, {p}: mailtable within 1.3× of the echo floor's cost (one alias lookup of a "
                            f"working-set mailbox, in turns with the echo table; judged on p50 latency)",
                            "met" if worst <= 1.3 else f"MISSED (up to {worst:.2f}×)",
                            "mailtable ÷ echo: " + "; ".join(parts)))
    for p in protos:
        rs = []
        for c in CASES:
            m, art = get(p, "mailtable", big, c), get(p, "c-article", big, c)
            if m and art:
                rs.append((c, ratio(m["ops_per_s"], art["ops_per_s"])))
        if rs:
            scans = [(c, x) for c, x in rs if c != "domain"]
            lo = min(scans, key=lambda t: t[1])
            targets.append((f"cold, {p}: at {big} users, ≥ 100× the article setup's ops/s (cases whose article query scans: all but domain)",
                            "met" if lo[1] >= 100 else "MISSED",
                            f"lowest {fratio(lo[1])} ({lo[0]}); " + ", ".join(f"{c} {fratio(x)}" for c, x in rs)))
    for p in protos:
        parts, worst = [], 0.0
        for s in sizes:
            e, mf = get(p, "echo", s, "floor"), get(p, "mailtable", s, "floor")
            if not e or not mf:
                continue
            lp = ratio(mf["p50_us"], e["p50_us"])
            worst = max(worst, lp)
            parts.append(f"{s}: p50 {mf['p50_us']} vs {e['p50_us']} µs = {lp:.1f}×")
        if parts:
            targets.append((f"cold, {p}: within 2× of the echo floor (the earlier target, before the cache; p50 latency)",
                            "met" if worst <= 2 else f"MISSED (up to {worst:.1f}×)",
                            "mailtable ÷ echo: " + "; ".join(parts)))
    for p in protos:
        ms = [warm(p, "mailtable", big, c) for c in CASES + ["floor"]]
        ms = [m for m in ms if m]
        if ms:
            hwm = max(int(m["hwm_kib"]) for m in ms)
            cold = [get(p, "mailtable", big, c) for c in CASES + ["floor"]]
            cold = [m for m in cold if m]
            extra = f"; cold run (cache_entries = 1): VmHWM {max(int(m['hwm_kib']) for m in cold) / 1024:.1f} MiB" if cold else ""
            targets.append((f"{p}: table-mailtable resident memory < 20 MB at {big} users, cache on "
                            f"(cache_entries = 20000, filled to its bound)",
                            "met" if hwm < 20 * 1024 else "MISSED",
                            f"VmHWM {hwm / 1024:.1f} MiB (VmRSS at the end {int(ms[-1]['rss_kib']) / 1024:.1f} MiB){extra}"))
    D = {}
    if a.dovecot_csv and os.path.exists(a.dovecot_csv):
        for r in csv.DictReader(open(a.dovecot_csv)):
            D[(r["backend"], r["size"], r["kind"], r["depth"])] = r
    if D:
        depths = sorted({k[3] for k in D}, key=int)
        for be, need in (("dict", 1.5), ("lua", 1.0)):
            parts, worst = [], None
            for s in sizes:
                for kind in ("user", "pass"):
                    for d in depths:
                        m, q = D.get((be, s, kind, d)), D.get(("sql", s, kind, d))
                        if m and q:
                            x = ratio(m["ops_per_s"], q["ops_per_s"])
                            worst = x if worst is None else min(worst, x)
                            parts.append(f"{s} {kind.upper()} depth {d}: {x:.2f}× "
                                         f"(p50 {ratio(q['p50_us'], m['p50_us']):.2f}×)")
            if parts:
                targets.append((f"serve ({be}) ≥ {need}× Dovecot's own sqlite driver (auth cache off; "
                                f"USER and PASS, 1 and 8 in flight)",
                                "met" if worst >= need else f"MISSED (lowest {worst:.2f}×)",
                                "serve ÷ sql in ops/s (in parentheses on p50 latency, sql's ÷ serve's): "
                                + ", ".join(parts)))
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
                mw, cw = warm(p, "mailtable", s, c), warm(p, "c-indexed", s, c)
                if not m and not mw:
                    continue

                def cell(x):
                    return f"{fnum(x['ops_per_s'])} ({x['p50_us']}/{x['p99_us']})" if x else "–"

                row = [CASE_TEXT[c], m["req_per_op"] if m else mw["req_per_op"],
                       f"**{cell(m)}**" if m else "–", cell(ci),
                       f"{fnum(art['ops_per_s'])} ({art['p50_us']})" if art else "–",
                       f"{ratio(m['ops_per_s'], ci['ops_per_s']):.2f}×" if m and ci else "–",
                       fratio(ratio(m['ops_per_s'], art['ops_per_s'])) if m and art else "–",
                       f"**{cell(mw)}**" if mw else "–", cell(cw),
                       f"{ratio(mw['ops_per_s'], cw['ops_per_s']):.2f}×" if mw and cw else "–"]
                found = "/".join(f"{float(x['found_pct']):.0f}" if x else "–" for x in (m, ci, art, mw, cw))
                errs = "/".join(x["errors"] if x else "–" for x in (m, ci, art, mw, cw))
                row += [found, errs]
                rows.append(row)
            if not rows:
                continue
            w(f"### {p}, {s} users")
            w("")
            for phase in ("cold", "warm"):
                e, mf = R.get((phase, p, "echo", s, "floor")), R.get((phase, p, "mailtable", s, "floor"))
                if e and mf:
                    w(f"Floor, {phase}, measured in turns with the tables below: one alias lookup of a mailbox key, "
                      f"the echo table (answers not-found at once) **{fnum(e['ops_per_s'])} ops/s** (p50 {e['p50_us']}, "
                      f"p99 {e['p99_us']} µs), table-mailtable {fnum(mf['ops_per_s'])} ops/s (p50 {mf['p50_us']}, "
                      f"p99 {mf['p99_us']} µs): {ratio(mf['p50_us'], e['p50_us']):.2f}× the floor's p50, "
                      f"{ratio(e['ops_per_s'], mf['ops_per_s']):.2f}× its cost in ops/s.")
                    w("")
            w("ops/s (p50/p99 µs per op):")
            w("")
            w(md_table(["case", "req/op", "cold: mailtable", "cold: c-indexed", "cold: c-article", "cold: mt ÷ idx",
                        "cold: mt ÷ article", "warm: mailtable", "warm: c-indexed", "warm: mt ÷ idx",
                        "found % (cold mt/idx/art, warm mt/idx)", "errors"], rows))
            w("")

    # ---------------------------------------------------------------- memory
    w("## Resident memory of the table process")
    w("")
    w("VmHWM (peak) and VmRSS (after the last case) from `/proc/PID/status`, MiB. Cold: table-mailtable "
      "with `cache_entries = 1`; warm: with the default `cache_entries = 20000`, filled to that bound "
      "before the first case.")
    w("")
    rows = []
    for p in protos:
        for phase in ("cold", "warm"):
            for t in ("mailtable", "c-indexed", "c-article", "echo"):
                for s in sizes:
                    ms = [R.get((phase, p, t, s, c)) for c in CASES + ["floor"]]
                    ms = [m for m in ms if m]
                    if ms:
                        rows.append([p, phase, t, s, f"{max(int(m['hwm_kib']) for m in ms) / 1024:.1f}",
                                     f"{int(ms[-1]['rss_kib']) / 1024:.1f}"])
    w(md_table(["protocol", "phase", "table", "users", "VmHWM", "VmRSS"], rows))
    w("")

    # ---------------------------------------------------------------- dovecot
    if D:
        w("## Dovecot side (2.3, auth-master socket)")
        w("")
        w("`USER` (userdb, service lmtp: what LMTP delivery asks) and `PASS` (passdb lookup without "
          "a password, as `doveadm auth lookup`) over one auth-master connection, DEPTH requests in "
          "flight (1: one at a time; 8: eight sessions at once), a working set of 300 active users asked "
          "over and over (each asked once before measuring). Every backend runs twice, with Dovecot's "
          "auth cache off (`auth_cache_size = 0`, the default: every lookup reaches the backend) and, "
          "as `+ auth cache`, on (`auth_cache_size = 10M`, `auth_cache_ttl = 1 hour`); serve has its own "
          "answer cache on (the default `cache_entries = 20000`). ops/s, p50/p99 µs.")
        w("")
        depths = sorted({k[3] for k in D}, key=int)
        base = ("sql", "dict", "dict-idle", "lua", "checkpassword")
        order = list(base) + [b + "+cache" for b in base]
        backends = [b for b in order if any(k[0] == b for k in D)]
        label = {"sql": "Dovecot sql (sqlite)", "dict": "serve: dict", "dict-idle": "serve: dict, idle_msecs=60000 (variant)",
                 "lua": "serve: Lua HTTP", "checkpassword": "checkpassword"}
        for b in base:
            label[b + "+cache"] = label[b] + " + auth cache"
        if "sql" in backends:
            backends.remove("sql")
            backends.insert(0, "sql")
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
