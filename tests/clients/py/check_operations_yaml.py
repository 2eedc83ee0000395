"""Checks the YAML blocks of docs/OPERATIONS.md as Prometheus and Kubernetes would load them:
each parses (PyYAML), the alert rules file has the shape of a Prometheus rules file (groups of
rules, each with a name, an `expr`, durations Prometheus accepts, labels and annotations as
string maps), the scrape config has the shape of `scrape_configs`, and the probes point at
/healthz and /readyz. Prints `ok <n> blocks` or exits 1 with the reason. Used by
crates/tidings/tests/metrics.rs; the metric names in them are checked there against /metrics.
"""

import re
import sys

import yaml

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def fail(why):
    print(f"docs/OPERATIONS.md: {why}", file=sys.stderr)
    sys.exit(1)


def string_map(what, m):
    if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
        fail(f"{what} must map strings to strings, got {m!r}")


def check_rules(doc):
    groups = doc["groups"]
    if not groups:
        fail("no rule groups")
    alerts = set()
    for g in groups:
        if not isinstance(g.get("name"), str) or not g.get("rules"):
            fail(f"group without a name or rules: {g!r}")
        for r in g["rules"]:
            unknown = set(r) - {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}
            if unknown:
                fail(f"rule {r.get('alert')!r} has unknown keys {unknown}")
            if not isinstance(r.get("alert"), str) or not isinstance(r.get("expr"), str):
                fail(f"rule without alert name or expr: {r!r}")
            if r["alert"] in alerts:
                fail(f"alert {r['alert']} twice")
            alerts.add(r["alert"])
            if "for" in r and not DURATION.match(str(r["for"])):
                fail(f"alert {r['alert']}: `for: {r['for']}` is not a Prometheus duration")
            string_map(f"alert {r['alert']} labels", r.get("labels", {}))
            string_map(f"alert {r['alert']} annotations", r.get("annotations", {}))
    return len(alerts)


def check_scrape(doc):
    for job in doc["scrape_configs"]:
        if not isinstance(job.get("job_name"), str):
            fail(f"scrape config without job_name: {job!r}")
        if job.get("metrics_path", "/metrics") != "/metrics":
            fail("the scrape config must scrape /metrics")
        if not DURATION.match(str(job.get("scrape_interval", "1m"))):
            fail("scrape_interval is not a duration")
        auth = job.get("authorization", {})
        if auth and (auth.get("type") != "Bearer" or "credentials_file" not in auth):
            fail("authorization must be a Bearer credentials_file")
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        if not targets or not all(re.match(r"^[\w.-]+:\d+$", t) for t in targets):
            fail(f"bad targets {targets}")


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    if len(blocks) < 3:
        fail(f"expected the scrape config, the probes and the rules, found {len(blocks)} yaml blocks")
    seen = set()
    for b in blocks:
        try:
            doc = yaml.safe_load(b)
        except yaml.YAMLError as e:
            fail(f"a yaml block does not parse: {e}")
        if "groups" in doc:
            n = check_rules(doc)
            seen.add("rules")
            if n < 5:
                fail(f"only {n} alerts")
        elif "scrape_configs" in doc:
            check_scrape(doc)
            seen.add("scrape")
        elif "livenessProbe" in doc:
            if doc["livenessProbe"]["httpGet"]["path"] != "/healthz" or doc["readinessProbe"]["httpGet"]["path"] != "/readyz":
                fail("the probes must use /healthz and /readyz")
            seen.add("probes")
        else:
            fail(f"a yaml block of unknown kind: {b[:60]!r}")
    if seen != {"rules", "scrape", "probes"}:
        fail(f"missing blocks: {seen}")
    print(f"ok {len(blocks)} blocks")


if __name__ == "__main__":
    main()
