"""Driver of bench/geoip/run.sh: starts gslb-dns and gdnsd on the same generated database,
one after the other, and measures readiness, memory and (gslb-dns) RTT reports."""
import json, os, re, shutil, statistics, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.environ["WORK"]
REPORTS = int(os.environ["REPORTS"])
PREFIXES = int(os.environ["PREFIXES"])
MMDB = sys.argv[1]
DNS_PORT, ADMIN_PORT, GDNSD_PORT = 25351, 25352, 25353
# A client inside the generated database (its first networks start at 1.0.0.0).
CLIENT_ECS = "1.0.0.0/24"
ANSWER = re.compile(r"^\d+\.\d+\.\d+\.\d+$", re.M)


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def answer(port):
    out = subprocess.run(
        ["dig", "+short", "+tries=1", "+time=1", "-p", str(port), "@127.0.0.1",
         f"+subnet={CLIENT_ECS}", "s3.storage.example"],
        capture_output=True, text=True).stdout
    return ANSWER.findall(out)


def start(cmd, port, log):
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    while not answer(port):
        if proc.poll() is not None or time.monotonic() - t0 > 60:
            raise SystemExit(f"{cmd[0]} did not answer; see {log}")
        time.sleep(0.01)
    return proc, time.monotonic() - t0


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def gslb_dns():
    data = os.path.join(WORK, "gslb-data")
    shutil.rmtree(data, ignore_errors=True)
    config = open(os.path.join(ROOT, "bench/dns/portico-bench.toml")).read()
    config = re.sub(r'(?m)^database = .*$', f'database = "{MMDB}"', config)
    config = config.replace("[admin]\nenabled = false", f'[admin]\nlisten = "127.0.0.1:{ADMIN_PORT}"')
    config += f'\n[store]\ndata_dir = "{data}"\n'
    path = os.path.join(WORK, "gslb-dns.toml")
    open(path, "w").write(config)
    proc, ready = start([os.path.join(ROOT, "target/release/gslb-dns"), "-c", path,
                         "--listen", f"127.0.0.1:{DNS_PORT}"], DNS_PORT,
                        os.path.join(WORK, "gslb-dns.log"))
    time.sleep(2)
    steady = status(proc.pid, "VmRSS")
    posts, rss = [], []
    sites = ["fra", "iad", "sin"]
    for round_ in range(REPORTS):
        started = time.monotonic()
        for i, site in enumerate(sites):
            samples = [{"prefix": f"1.{(k >> 8) & 255}.{k & 255}.0/24",
                        "rtt_us": 1000 + 500 * ((i + round_ + k) % 3), "samples": 20}
                       for k in range(PREFIXES)]
            body = json.dumps({"site": site, "samples": samples}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{ADMIN_PORT}/api/v1/rtt", body,
                                         {"Content-Type": "application/json"})
            t = time.monotonic()
            urllib.request.urlopen(req, timeout=10).read()
            posts.append(time.monotonic() - t)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        rss.append(status(proc.pid, "VmRSS"))
    after = status(proc.pid, "VmRSS")
    peak = status(proc.pid, "VmHWM")
    ok = bool(answer(DNS_PORT))
    stop(proc)
    return {"ready": ready, "steady": steady, "peak": peak, "after": after, "posts": posts,
            "answers": ok, "rss": rss}


def gdnsd():
    d = os.path.join(WORK, "gdnsd")
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("zones", "run", "state"):
        os.makedirs(os.path.join(d, sub))
    conf = os.path.join(ROOT, "bench/dns/conf/gdnsd")
    text = open(os.path.join(conf, "config")).read()
    text = text.replace("@PORT@", str(GDNSD_PORT)).replace("@DIR@", d).replace("@MMDB@", MMDB)
    open(os.path.join(d, "config"), "w").write(text)
    shutil.copy(os.path.join(conf, "zones/storage.example"), os.path.join(d, "zones"))
    proc, ready = start(["gdnsd", "-c", d, "-f", "start"], GDNSD_PORT,
                        os.path.join(WORK, "gdnsd.log"))
    time.sleep(2)
    result = {"ready": ready, "steady": status(proc.pid, "VmRSS"),
              "peak": status(proc.pid, "VmHWM")}
    stop(proc)
    return result


def main():
    size = os.path.getsize(MMDB)
    ours = gslb_dns()
    peer = gdnsd()
    posts = sorted(ours["posts"])
    print(f"# GeoIP at real size: {os.path.basename(MMDB)} ({size / 2**20:.0f} MiB)\n")
    print("| server | first answer | RSS answering | peak (VmHWM) |")
    print("|---|---|---|---|")
    for name, r in (("gslb-dns", ours), ("gdnsd", peer)):
        print(f"| {name} | {r['ready']:.2f} s | {r['steady']:.1f} MiB | {r['peak']:.1f} MiB |")
    print(f"\ngslb-dns after {REPORTS} rounds of RTT reports (3 sites x {PREFIXES} prefixes,"
          f" one round per second): RSS {ours['after']:.1f} MiB"
          f" ({ours['after'] - ours['steady']:+.1f} MiB), still answering: {ours['answers']};"
          f" report p50 {statistics.median(posts) * 1000:.1f} ms,"
          f" max {posts[-1] * 1000:.1f} ms")
    rss = ours["rss"]
    marks = sorted({len(rss) // 3, 2 * len(rss) // 3, len(rss)} - {0})
    print("RSS after round " + ", ".join(f"{m}: {rss[m - 1]:.1f} MiB" for m in marks))


main()
