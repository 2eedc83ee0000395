"""Parses a Prometheus text exposition (GET /metrics) read from stdin with the reference
parser of the Prometheus project's Python client (``prometheus_client.parser``), which rejects
what Prometheus itself would not scrape, and prints what it found as one JSON document:

    {"families": {name: type, ...}, "samples": [[name, {label: value}, value], ...]}

A parse error exits with status 1 and the parser's message on stderr. Used by
crates/tidings/tests/metrics.rs.
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    families = {}
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                raise ValueError(f"family {family.name} appears twice")
            families[family.name] = family.type
            for s in family.samples:
                value = s.value
                if math.isnan(value) or math.isinf(value):
                    value = str(value)
                samples.append([s.name, dict(s.labels), value])
    except Exception as e:  # noqa: BLE001 - any parser complaint fails the test
        print(f"exposition rejected by prometheus_client: {e!r}", file=sys.stderr)
        sys.exit(1)
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
