#!/usr/bin/env python3
"""Helper for bench/dns/run.sh (Python 3 standard library only).

  bench.py queries FILE                       write the dnsperf query file (80% s3 A, 20% static A)
  bench.py ecs-option CIDR                    print dnsperf's `-E 8:<hex>` value for an ECS subnet
  bench.py check OUT.md NAME=PORT ...         dig correctness matrix (source address and ECS)
  bench.py measure RAW.tsv NAME=PORT:PID ...  dnsperf runs: REPS x TESTS x servers, interleaved
  bench.py memory OUT.tsv NAME=PORT:PID ...   RSS now (VmRSS) and peak (VmHWM), summed per process tree
  bench.py summary DIR                        markdown summary from DIR/{raw.tsv,check.tsv,memory.tsv}

Settings come from the environment (run.sh exports them): REPS DURATION TESTS CLIENTS
THREADS OUTSTANDING TIMEOUT SRC ECS_SRC ECS_NET QUERIES PIN_CLIENT NICE.
Everything is loopback: servers on 127.0.0.1, clients bound to 127.x.y.z source addresses.
"""
import ipaddress
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
env = os.environ.get

REPS = int(env("REPS", "3"))
DURATION = int(env("DURATION", "10"))
TESTS = env("TESTS", "max ecs").split()
CLIENTS = env("CLIENTS", "4")
THREADS = env("THREADS", "1")
OUTSTANDING = env("OUTSTANDING", "100")
TIMEOUT = env("TIMEOUT", "1")
SRC = env("SRC", "127.1.0.5")  # EU in the test database
ECS_SRC = env("ECS_SRC", "127.0.0.1")  # not in the database: only the ECS option can place it
ECS_NET = env("ECS_NET", "192.0.2.0/24")  # EU in the test database
QUERIES = env("QUERIES", "/tmp/portico-bench/dns/queries.txt")
PIN_CLIENT = env("PIN_CLIENT", "")
NICE = env("NICE", "")
BUSY = float(env("BUSY", "0.25"))  # "other load" (cores) above which a run counts as disturbed
STATIC_SERVERS = set(env("STATIC_SERVERS", "knot").split())  # no geo logic by design
OURS = env("OURS", "gslb-dns")
PEER = env("PEER", "gdnsd")

EU = {"127.0.10.1", "127.0.10.2"}
NA = {"127.0.20.1", "127.0.20.2"}
AS = {"127.0.30.1", "127.0.30.2"}
FB = {"127.0.99.1"}
# (label, dig options, expected s3 A set)
CASES = [
    ("src 127.1.0.5 (EU)", ["-b", "127.1.0.5"], EU),
    ("src 127.2.0.5 (NA)", ["-b", "127.2.0.5"], NA),
    ("src 127.3.0.5 (AS)", ["-b", "127.3.0.5"], AS),
    ("src 127.0.0.1 (not in DB)", ["-b", "127.0.0.1"], FB),
    ("ECS 192.0.2.0/24 (EU)", ["-b", "127.0.0.1", "+subnet=192.0.2.0/24"], EU),
    ("ECS 198.51.100.0/24 (NA)", ["-b", "127.0.0.1", "+subnet=198.51.100.0/24"], NA),
    ("ECS 203.0.113.0/24 (AS)", ["-b", "127.0.0.1", "+subnet=203.0.113.0/24"], AS),
    ("ECS 2001:db8:1::/48 (EU)", ["-b", "127.0.0.1", "+subnet=2001:db8:1::/48"], EU),
]


def servers_of(args):
    """NAME=PORT[:PID] -> [(name, port, pid or None)]"""
    out = []
    for a in args:
        name, rest = a.split("=", 1)
        port, _, pid = rest.partition(":")
        out.append((name, int(port), int(pid) if pid else None))
    return out


# ------------------------------------------------------------------ /proc accounting
def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(pid):
    """pid and its descendants (gdnsd/knot/gslb-dns are single processes, but be safe)."""
    kids, todo, seen = _children_map(), [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, []))
    return seen


def cpu_seconds(pid):
    """utime + stime of the process tree (all threads), in seconds."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # stat fields 14 (utime) and 15 (stime)
    return total / CLK_TCK


def status_kib(pid, key):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def machine_busy_seconds():
    """user + nice + system + irq + softirq of the whole machine, in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ queries / ECS
def cmd_queries(path):
    lines = ["s3.storage.example A"] * 8000 + ["static.storage.example A"] * 2000
    random.Random(20261126).shuffle(lines)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"query file {path}: 10000 lines, 80% s3.storage.example A, 20% static.storage.example A")


def ecs_option(cidr):
    """EDNS option 8 (RFC 7871) as dnsperf's -E CODE:HEX: family, source prefix, scope 0, address."""
    net = ipaddress.ip_network(cidr, strict=False)
    family = 1 if net.version == 4 else 2
    nbytes = (net.prefixlen + 7) // 8
    addr = net.network_address.packed[:nbytes]
    return "8:" + f"{family:04x}{net.prefixlen:02x}00" + addr.hex()


# ------------------------------------------------------------------ correctness
def dig(port, opts, qname, qtype="A"):
    cmd = ["dig", "+time=2", "+tries=1", "+norecurse", "@127.0.0.1", "-p", str(port), *opts, qname, qtype]
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def parse_dig(out):
    status = re.search(r"status: (\w+)", out)
    answers, ttls = set(), set()
    in_answer = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            in_answer = True
            continue
        if in_answer:
            if not line.strip() or line.startswith(";;"):
                in_answer = False
                continue
            f = line.split()
            if len(f) >= 5 and f[3] == "A":
                answers.add(f[4])
                ttls.add(f[1])
    scope = re.search(r"CLIENT-SUBNET: (\S+)", out)
    return {
        "status": status.group(1) if status else "TIMEOUT",
        "answers": answers,
        "ttl": ",".join(sorted(ttls)) or "-",
        "scope": scope.group(1) if scope else "-",
    }


def cmd_check(out_md, args):
    servers = servers_of(args)
    rows = []  # (server, case, verdict, answer, ttl, ecs echo)
    for name, port, _ in servers:
        static = name in STATIC_SERVERS
        for label, opts, want in CASES:
            r = parse_dig(dig(port, opts, "s3.storage.example"))
            if r["status"] == "NOERROR" and r["answers"] == want and r["ttl"] == "1":
                verdict = "OK"
            elif static:
                verdict = "static"
            else:
                verdict = "MISMATCH"
            rows.append((name, label, verdict, " ".join(sorted(r["answers"])) or r["status"], r["ttl"], r["scope"]))
        r = parse_dig(dig(port, ["-b", "127.1.0.5"], "static.storage.example"))
        ok = r["status"] == "NOERROR" and r["answers"] == {"127.0.0.53"}
        rows.append((name, "static.storage.example A", "OK" if ok else "MISMATCH",
                     " ".join(sorted(r["answers"])) or r["status"], r["ttl"], "-"))
        r = parse_dig(dig(port, ["-b", "127.1.0.5"], "nothing-here.storage.example"))
        rows.append((name, "nothing-here (NXDOMAIN)", "OK" if r["status"] == "NXDOMAIN" else "MISMATCH",
                     r["status"], "-", "-"))
    with open(os.path.splitext(out_md)[0] + ".tsv", "w") as f:
        f.write("server\tcase\tverdict\tanswer\tttl\tecs\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
    # one table: cases down, servers across
    names = [s[0] for s in servers]
    cell = {(r[0], r[1]): r for r in rows}
    cases = list(dict.fromkeys(r[1] for r in rows))
    expect = {label: " ".join(sorted(w)) for label, _, w in CASES}
    expect["static.storage.example A"] = "127.0.0.53"
    expect["nothing-here (NXDOMAIN)"] = "NXDOMAIN"
    # ECS rows: "(scope /N)" is the ECS scope prefix the server echoed (/0: answer not ECS-specific)
    lines = ["| case | expected | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for c in cases:
        cells = []
        for n in names:
            r = cell[(n, c)]
            mark = {"OK": "ok", "static": "static", "MISMATCH": "**MISMATCH**"}[r[2]]
            extra = f" ttl {r[4]}" if r[4] not in ("-", "1") and r[2] != "OK" else ""
            ecs = f" (scope /{r[5].rsplit('/', 1)[-1]})" if r[5] != "-" else ""
            cells.append(f"{r[3]}{extra}{ecs} {mark}")
        lines.append(f"| {c} | {expect[c]} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if any(n in STATIC_SERVERS for n in names):
        text += ("\n`static`: " + ", ".join(sorted(STATIC_SERVERS & set(names)))
                 + " serves a static zone (s3 = the EU pair for everyone): no geo logic by design.\n")
    with open(out_md, "w") as f:
        f.write(text)
    print(text)
    bad = [r for r in rows if r[0] == OURS and r[2] != "OK"]
    if bad:
        print(f"!! {OURS}: {len(bad)} check(s) failed; dig commands to reproduce:")
        for r in bad:
            opts = dict((c[0], c[1]) for c in CASES).get(r[1])
            port = dict((s[0], s[1]) for s in servers)[OURS]
            qname = "s3.storage.example" if opts is not None else r[1].split()[0]
            print(f"   dig @127.0.0.1 -p {port} {' '.join(opts or ['-b', '127.1.0.5'])} {qname} A")
        return 1
    return 0


# ------------------------------------------------------------------ measurement
PATTERNS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "runtime": r"Run time \(s\):\s+([\d.]+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "avg_lat": r"Average Latency \(s\):\s+([\d.]+)",
    "resp_size": r"Average packet size:\s+request \d+, response (\d+)",
}
FIELDS = ["qps", "completed", "lost_pct", "avg_lat_ms", "resp_size", "srv_cpu_s", "srv_cores",
          "q_per_cpu_s", "dnsperf_cores", "other_cores", "wall_s"]


def dnsperf(port, pid, src, extra, log):
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-a", src, "-d", QUERIES,
           "-c", CLIENTS, "-T", THREADS, "-q", OUTSTANDING, "-t", TIMEOUT,
           "-l", str(DURATION), *extra]
    if PIN_CLIENT:
        cmd = ["taskset", "-c", PIN_CLIENT, *cmd]
    if NICE:
        cmd = ["nice", "-n", NICE, *cmd]
    c0, m0, k0, t0 = cpu_seconds(pid), machine_busy_seconds(), children_cpu_seconds(), time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    c1, m1, k1, t1 = cpu_seconds(pid), machine_busy_seconds(), children_cpu_seconds(), time.monotonic()
    text = p.stdout + p.stderr
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n" + text + "\n")
    r = {}
    for k, rx in PATTERNS.items():
        m = re.search(rx, text)
        r[k] = float(m.group(1)) if m else float("nan")
    wall = t1 - t0
    srv = c1 - c0
    client = k1 - k0
    # the server's CPU is spread over dnsperf's sending window ("Run time"), not the
    # trailing wait for lost queries; fall back to the wall time if it was not printed
    window = r["runtime"] if r["runtime"] == r["runtime"] and r["runtime"] > 0 else wall
    return {
        "qps": r["qps"],
        "completed": r["completed"],
        "lost_pct": 100.0 * r["lost"] / r["sent"] if r["sent"] else float("nan"),
        "avg_lat_ms": r["avg_lat"] * 1000.0,
        "resp_size": r["resp_size"],
        "srv_cpu_s": srv,
        "srv_cores": srv / window,
        "q_per_cpu_s": r["completed"] / srv if srv > 0 else float("nan"),
        "dnsperf_cores": client / window,
        "other_cores": max(0.0, ((m1 - m0) - srv - client) / wall),
        "wall_s": wall,
    }


def cmd_measure(raw, args):
    servers = servers_of(args)
    plan = []
    for t in TESTS:
        if t == "max":
            plan.append(("max", SRC, ["-e"]))
        elif t == "ecs":
            plan.append(("ecs", ECS_SRC, ["-E", ecs_option(ECS_NET)]))
        else:
            sys.exit(f"unknown test {t!r} (known: max ecs)")
    log = os.path.join(os.path.dirname(raw), "dnsperf.log")
    new = not os.path.exists(raw)
    total, i = REPS * len(plan) * len(servers), 0
    with open(raw, "a") as f:
        if new:
            f.write("rep\ttest\tserver\t" + "\t".join(FIELDS) + "\n")
        for rep in range(1, REPS + 1):
            shift = (rep - 1) % len(servers)  # rotate so nobody always goes first
            order = servers[shift:] + servers[:shift]
            for test, src, extra in plan:
                for name, port, pid in order:
                    i += 1
                    r = dnsperf(port, pid, src, extra, log)
                    f.write(f"{rep}\t{test}\t{name}\t" + "\t".join(f"{r[k]:.6g}" for k in FIELDS) + "\n")
                    f.flush()
                    print(f"  [{i:2}/{total}] rep {rep} {test:<4} {name:<9} {r['qps']:>9,.0f} q/s  "
                          f"srv {r['srv_cores']:.2f} cores  {r['q_per_cpu_s']:>9,.0f} q/CPU-s  "
                          f"lost {r['lost_pct']:.2f}%  avg {r['avg_lat_ms']:.3f} ms  resp {r['resp_size']:.0f} B  "
                          f"dnsperf {r['dnsperf_cores']:.2f}  other {r['other_cores']:.2f} cores", flush=True)


def cmd_memory(out, args):
    with open(out, "w") as f:
        f.write("server\trss_end_kib\trss_peak_kib\tthreads\n")
        for name, _, pid in servers_of(args):
            threads = len(os.listdir(f"/proc/{pid}/task")) if os.path.isdir(f"/proc/{pid}/task") else 0
            f.write(f"{name}\t{status_kib(pid, 'VmRSS')}\t{status_kib(pid, 'VmHWM')}\t{threads}\n")


# ------------------------------------------------------------------ summary
def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(v, nd=0):
    return "-" if v != v else f"{v:,.{nd}f}"


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [dict(zip(rows[0], r)) for r in rows[1:]] if rows else []


def cmd_summary(d):
    raw = read_tsv(os.path.join(d, "raw.tsv"))
    checks = read_tsv(os.path.join(d, "check.tsv"))
    mem = {r["server"]: r for r in read_tsv(os.path.join(d, "memory.tsv"))}
    versions = {}
    vp = os.path.join(d, "versions.tsv")
    if os.path.exists(vp):
        for line in open(vp):
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                versions[k] = v
    servers = list(dict.fromkeys(r["server"] for r in raw))
    tests = list(dict.fromkeys(r["test"] for r in raw))
    data = {}
    for r in raw:
        data.setdefault((r["server"], r["test"]), []).append({k: float(r[k]) for k in FIELDS})
    reps = max((len(v) for v in data.values()), default=0)

    def m(s, t, k):
        return med([x[k] for x in data.get((s, t), [])])

    def spread(s, t, k):
        xs = [x[k] for x in data.get((s, t), [])]
        return f"{fmt(min(xs))}–{fmt(max(xs))}" if xs else "-"

    def disturbed(s, t):
        xs = [x["other_cores"] for x in data.get((s, t), [])]
        return f"{sum(x > BUSY for x in xs)}/{len(xs)}"

    def correctness(s):
        v = [c["verdict"] for c in checks if c["server"] == s]
        if not v:
            return "-"
        ok = v.count("OK")
        if s in STATIC_SERVERS:
            return f"{ok}/{len(v)} (static zone)"
        return f"{ok}/{len(v)}" + ("" if ok == len(v) else " **MISMATCH**")

    out = []
    w = out.append
    w(f"# DNS benchmark: gslb-dns vs gdnsd (geoip) vs Knot (static)\n")
    w(f"dnsperf -c {CLIENTS} -T {THREADS} -q {OUTSTANDING} -t {TIMEOUT} -l {DURATION}, UDP over loopback, "
      f"query mix 80% s3 A (geo) / 20% static A; median of {reps} interleaved rep(s)"
      + (f"; servers and dnsperf at nice {NICE}" if NICE else "")
      + (f"; dnsperf pinned to CPU {PIN_CLIENT}" if PIN_CLIENT else "")
      + (f"; servers pinned to CPU {env('PIN_SERVERS')}" if env("PIN_SERVERS") else "")
      + f". Machine: {os.cpu_count()} CPUs.\n")
    test_desc = {"max": f"source {SRC} (EU by GeoIP), EDNS0 (-e)",
                 "ecs": f"source {ECS_SRC} (not in DB), ECS {ECS_NET} (-E {ecs_option(ECS_NET)})"}
    for t in tests:
        w(f"- `{t}`: {test_desc.get(t, t)}")
    w("")
    w("| server | version | answers | test | max QPS | QPS range | server CPU (cores) | queries per server CPU-s "
      "| lost % | avg lat ms | resp B | dnsperf cores | other load (cores) | disturbed runs | RSS peak MiB | RSS end MiB |")
    w("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        mm = mem.get(s, {})
        peak = int(mm["rss_peak_kib"]) / 1024 if mm else float("nan")
        end = int(mm["rss_end_kib"]) / 1024 if mm else float("nan")
        for t in tests:
            w(f"| {s} | {versions.get(s, '-')} | {correctness(s)} | {t} | {fmt(m(s, t, 'qps'))} | {spread(s, t, 'qps')} | "
              f"{fmt(m(s, t, 'srv_cores'), 2)} | {fmt(m(s, t, 'q_per_cpu_s'))} | {fmt(m(s, t, 'lost_pct'), 2)} | "
              f"{fmt(m(s, t, 'avg_lat_ms'), 3)} | {fmt(m(s, t, 'resp_size'))} | {fmt(m(s, t, 'dnsperf_cores'), 2)} | "
              f"{fmt(m(s, t, 'other_cores'), 2)} | {disturbed(s, t)} | {fmt(peak, 1)} | {fmt(end, 1)} |")
    if OURS in servers:
        w("")
        w(f"Ratios {OURS} / peer (median QPS ratio, median queries-per-server-CPU-second ratio):\n")
        w("| test | vs | QPS ratio | queries per CPU-s ratio |")
        w("|---|---|---:|---:|")
        peers = list(dict.fromkeys([p for p in [PEER] + servers if p in servers and p != OURS]))
        for t in tests:
            for peer in peers:
                q = m(OURS, t, "qps") / m(peer, t, "qps") if m(peer, t, "qps") else float("nan")
                c = m(OURS, t, "q_per_cpu_s") / m(peer, t, "q_per_cpu_s") if m(peer, t, "q_per_cpu_s") else float("nan")
                w(f"| {t} | {peer}{' (static)' if peer in STATIC_SERVERS else ''} | {fmt(q, 2)} | {fmt(c, 2)} |")
    w("")
    w("Server CPU = utime+stime of the server process (all threads) over the dnsperf run / run time; "
      "queries per server CPU-s = queries completed / server CPU seconds. dnsperf cores = the client's own CPU; "
      "other load = the rest of the machine's busy time (kernel softirq for loopback, other jobs); "
      f"disturbed runs = runs with other load above {BUSY} cores (e.g. a parallel build: rerun, or use NICE=-10). "
      "RSS peak = VmHWM, RSS end = VmRSS after all runs.")
    text = "\n".join(out) + "\n"
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "queries":
        return cmd_queries(args[0])
    if cmd == "ecs-option":
        print(ecs_option(args[0]))
        return 0
    if cmd == "check":
        return cmd_check(args[0], args[1:])
    if cmd == "measure":
        return cmd_measure(args[0], args[1:])
    if cmd == "memory":
        return cmd_memory(args[0], args[1:])
    if cmd == "summary":
        return cmd_summary(args[0])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main() or 0)
