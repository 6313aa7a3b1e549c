"""A daemon's GET /metrics: the Prometheus text format (version 0.0.4),
parsed strictly into families and samples, and read by sample: one value
(metric), all of them (scrape(...).as_dict()), or a wait until a sample
reaches a value (wait_metric), polled with a deadline.
"""

import json
import math
import re

from lib.harness import http_request, wait_for

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class MetricsFormatError(AssertionError):
    pass


class Metrics:
    """A parsed exposition: families in order, each with help, type and
    samples [(sample name, labels dict, value)]."""

    def __init__(self, families):
        self.families = families

    def samples(self):
        for family in self.families.values():
            yield from family["samples"]

    def value(self, name, **labels):
        found = [v for n, l, v in self.samples() if n == name and l == labels]
        if len(found) != 1:
            raise AssertionError(f"expected one sample {name}{labels}, found {len(found)}")
        return found[0]

    def type_of(self, family):
        return self.families[family]["type"]

    def as_dict(self):
        """{(sample name, ((label, value), ...) sorted): value}."""
        return {(n, tuple(sorted(l.items()))): v for n, l, v in self.samples()}


def _parse_labels(line, i, where):
    """Parses label pairs from line[i:] (just after '{'); returns (labels, index after '}')."""
    labels = {}
    while True:
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(line, i)
        if not m:
            raise MetricsFormatError(f"{where}: bad label name at column {i}")
        name = m.group(0)
        i = m.end()
        if line[i:i + 2] != '="':
            raise MetricsFormatError(f"{where}: expected =\" after label {name}")
        i += 2
        value = []
        while True:
            if i >= len(line):
                raise MetricsFormatError(f"{where}: unterminated value of label {name}")
            c = line[i]
            if c == "\\":
                escaped = {"\\": "\\", '"': '"', "n": "\n"}.get(line[i + 1:i + 2])
                if escaped is None:
                    raise MetricsFormatError(f"{where}: bad escape in label {name}")
                value.append(escaped)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise MetricsFormatError(f"{where}: label {name} repeated")
        if name.startswith("__"):
            raise MetricsFormatError(f"{where}: reserved label name {name}")
        labels[name] = "".join(value)
        if i < len(line) and line[i] == ",":
            i += 1
        elif i < len(line) and line[i] == "}":
            continue
        else:
            raise MetricsFormatError(f"{where}: expected , or }} after label {name}")


def _family_of(families, name):
    """The family a sample name belongs to, by the format's suffix rules."""
    if name in families and families[name]["type"] not in ("histogram", "summary"):
        return name
    for suffix, kinds in (("_bucket", ("histogram",)), ("_count", ("histogram", "summary")),
                          ("_sum", ("histogram", "summary"))):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") in kinds:
            return base
    if name in families and families[name]["type"] == "summary":
        return name  # a quantile sample
    return None


def parse_metrics(text):
    """Parses and validates a Prometheus text exposition. Raises
    MetricsFormatError on anything the format does not allow, and also when
    a family lacks HELP or TYPE, declares them after its samples, has its
    samples split up, or a histogram is not cumulative or does not end with
    le="+Inf" equal to its _count."""
    if not text.endswith("\n"):
        raise MetricsFormatError("the exposition does not end with a newline")
    families = {}
    finished = set()   # families whose block of samples has ended
    current = None     # the family of the last sample
    seen = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number} {line!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                continue  # a plain comment
            keyword, name = parts[1], parts[2]
            if not METRIC_NAME.fullmatch(name):
                raise MetricsFormatError(f"{where}: bad metric name")
            family = families.setdefault(name, {"help": None, "type": None, "samples": []})
            if family["samples"] or name in finished:
                raise MetricsFormatError(f"{where}: {keyword} after the family's samples")
            if keyword == "HELP":
                if family["help"] is not None:
                    raise MetricsFormatError(f"{where}: second HELP for {name}")
                doc = parts[3] if len(parts) == 4 else ""
                if re.search(r"\\(?![\\n])", doc):
                    raise MetricsFormatError(f"{where}: bad escape in HELP")
                family["help"] = doc
            else:
                if family["type"] is not None:
                    raise MetricsFormatError(f"{where}: second TYPE for {name}")
                if len(parts) != 4 or parts[3] not in TYPES:
                    raise MetricsFormatError(f"{where}: bad TYPE")
                family["type"] = parts[3]
            continue
        m = METRIC_NAME.match(line)
        if not m:
            raise MetricsFormatError(f"{where}: a sample must start with a metric name")
        name, i, labels = m.group(0), m.end(), {}
        if line[i:i + 1] == "{":
            labels, i = _parse_labels(line, i + 1, where)
        rest = line[i:]
        fields = rest.split(" ")
        if len(fields) not in (2, 3) or fields[0] != "":
            raise MetricsFormatError(f"{where}: expected ' value [timestamp]' after the name")
        if not FLOAT.fullmatch(fields[1]):
            raise MetricsFormatError(f"{where}: bad value {fields[1]!r}")
        if len(fields) == 3 and not re.fullmatch(r"-?[0-9]+", fields[2]):
            raise MetricsFormatError(f"{where}: bad timestamp")
        value = float(fields[1])
        family_name = _family_of(families, name)
        if family_name is None:
            raise MetricsFormatError(f"{where}: sample without HELP and TYPE before it")
        family = families[family_name]
        if family["help"] is None or family["type"] is None:
            raise MetricsFormatError(f"{where}: family {family_name} lacks HELP or TYPE")
        if family_name != current:
            if family_name in finished:
                raise MetricsFormatError(f"{where}: samples of {family_name} are not together")
            if current is not None:
                finished.add(current)
            current = family_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise MetricsFormatError(f"{where}: repeated sample")
        seen.add(key)
        if family["type"] == "counter" and not (value >= 0):
            raise MetricsFormatError(f"{where}: counter value must be >= 0")
        if name.endswith("_bucket") and family["type"] == "histogram" and "le" not in labels:
            raise MetricsFormatError(f"{where}: bucket without le")
        family["samples"].append((name, labels, value))

    for name, family in families.items():
        if family["help"] is None or family["type"] is None:
            raise MetricsFormatError(f"family {name} lacks HELP or TYPE")
        if not family["samples"]:
            raise MetricsFormatError(f"family {name} has no sample")
        if family["type"] == "histogram":
            _check_histogram(name, family["samples"])
    return Metrics(families)


def _check_histogram(name, samples):
    groups = {}
    for sample, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        group = groups.setdefault(rest, {"buckets": [], "count": None, "sum": None})
        if sample == name + "_bucket":
            le = labels["le"]
            if not FLOAT.fullmatch(le) or le == "NaN":
                raise MetricsFormatError(f"{name}: bad le {le!r}")
            group["buckets"].append((float(le), value))
        elif sample == name + "_count":
            group["count"] = value
        elif sample == name + "_sum":
            group["sum"] = value
        else:
            raise MetricsFormatError(f"{name}: unexpected sample {sample}")
    for rest, group in groups.items():
        buckets = group["buckets"]
        if not buckets or buckets[-1][0] != math.inf:
            raise MetricsFormatError(f"{name}{rest}: the last bucket must be le=\"+Inf\"")
        for (le1, v1), (le2, v2) in zip(buckets, buckets[1:]):
            if not le1 < le2:
                raise MetricsFormatError(f"{name}{rest}: buckets not in increasing le order")
            if v2 < v1:
                raise MetricsFormatError(f"{name}{rest}: buckets not cumulative")
        if group["count"] is None or group["sum"] is None:
            raise MetricsFormatError(f"{name}{rest}: _count or _sum missing")
        if buckets[-1][1] != group["count"]:
            raise MetricsFormatError(f"{name}{rest}: +Inf bucket {buckets[-1][1]} != _count "
                                     f"{group['count']}")


def scrape(port, token=None, host="127.0.0.1"):
    """GET /metrics; checks the status and content type, returns the parse."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, body, response_headers = http_request(port, "GET", "/metrics", headers=headers, timeout=10,
                                                  host=host)
    if status != 200:
        raise AssertionError(f"GET /metrics: {status} {body!r}")
    content_type = {k.lower(): v for k, v in response_headers.items()}.get("content-type", "")
    if not (content_type.startswith("text/plain") and "version=0.0.4" in content_type):
        raise AssertionError(f"GET /metrics: Content-Type {content_type!r}")
    text = body.decode("utf-8") if isinstance(body, bytes) else json.dumps(body)
    return parse_metrics(text)


def sample_key(name, **labels):
    """(name, labels): a sample named with its labels in the exposition's own
    syntax, 'evs_listen_http_rejected_total{code="SERVER_BUSY"}', or by keyword."""
    brace = name.find("{")
    if brace >= 0:
        parsed, end = _parse_labels(name, brace + 1, repr(name))
        if end != len(name):
            raise ValueError(f"text after the labels in {name!r}")
        name, labels = name[:brace], {**parsed, **labels}
    return name, labels


def metric(port, name, token=None, host="127.0.0.1", **labels):
    """One sample's value, e.g. metric(port, "evs_broadcast_sessions") or
    metric(port, 'evs_listen_http_rejected_total{code="SERVER_BUSY"}'); host:
    the daemon's address (a label named host goes in the name's braces)."""
    name, labels = sample_key(name, **labels)
    return scrape(port, token, host).value(name, **labels)


def wait_metric(port, name, want, timeout=10.0, token=None, **labels):
    """Polls /metrics until the sample equals want (a number) or satisfies it
    (a predicate); returns the value then. A daemon not accepting connections
    (yet) and a sample not (yet) exposed count as not there yet."""
    name, labels = sample_key(name, **labels)
    ok = want if callable(want) else (lambda v: v == want)
    last = []

    def reached():
        try:
            exposition = scrape(port, token)
        except OSError:  # not accepting yet (starting), or busy
            return None
        found = [v for n, l, v in exposition.samples() if n == name and l == labels]
        last[:] = found
        return found and ok(found[0]) and (found[0],)
    try:
        return wait_for(reached, timeout, 0.02, f"{name}{labels or ''} to reach {want}")[0]
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen {last or 'no sample'}") from None
