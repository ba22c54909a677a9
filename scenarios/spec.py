"""The scenario format: a YAML document parsed into frozen values, with errors that say where.

A scenario names the feature repository to apply (a folder, relative to the scenario file), the
principals and their roles, the event streams to ingest (inline rows or a seeded generator; through the
source topic or the HTTP ingest API), the queries and the values they must return, the flows the audit log
must show, and deliberate misuse steps that the report must flag. Batch files, materialize steps and
training-data queries (`BatchFile`, `Materialize`, `TrainingQuery`) drive batch materialization and
offline retrieval.

Parsing is pure: `parse_scenario` takes the text; only `load_scenario` reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from events.errors import InvalidRequest
from events.flows import Flow

PRESENT = "present"
ROLES = ("viewer", "consumer", "operator", "editor", "owner")
MISUSE_KINDS = ("unauthorized_read", "feature_rows_to_control_plane", "tamper_audit_record")
DISTRIBUTIONS = ("uniform", "zipf")


class ScenarioError(InvalidRequest):
    """A scenario document that does not parse: `origin: path.in.document: what is wrong`."""

    def __init__(self, origin: str, where: str, problem: str) -> None:
        super().__init__(f"{origin}: {where or '<document>'}: {problem}")
        self.origin, self.where, self.problem = origin, where, problem


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyDistribution:
    field: str
    values: int  # how many distinct keys: prefix + 0 .. values-1
    distribution: str = "uniform"
    exponent: float = 1.2  # zipf only
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Generator:
    seed: int
    count: int
    rate_per_s: float  # events are spaced 1/rate apart in event time, ending just before the replay starts
    keys: KeyDistribution
    timestamp_field: str
    numbers: tuple[tuple[str, float, float], ...] = ()  # (field, low, high), uniform, rounded to cents
    choices: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (field, values), uniform
    constants: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Stream:
    source: str
    via: str  # "topic" or "http"
    rows: tuple[dict[str, Any], ...] = ()
    generator: Generator | None = None
    principal: str = ""  # http: who pushes (default: the admin)


@dataclass(frozen=True, slots=True)
class Query:
    service: str
    keys: dict[str, Any]
    principal: str = ""  # default: the admin
    expect: dict[str, Any] = field(default_factory=dict)  # feature -> exact value or PRESENT
    request_context: dict[str, Any] = field(default_factory=dict)  # realtime views' request fields
    lineage: bool = False  # sample this value's lineage into the report


@dataclass(frozen=True, slots=True)
class BatchFile:
    """A file (CSV or Parquet, relative to the scenario file) that stands in for a batch source's table:
    the runner copies it next to the deployment's stores and points the source at the copy."""

    source: str
    path: Path


@dataclass(frozen=True, slots=True)
class Materialize:
    """A manual trigger of a batch view's jobs over [start, end), waited for until they succeed."""

    feature_view: str
    start: str  # ISO-8601
    end: str
    principal: str = ""  # who triggers (an operator or above; default: the admin)


@dataclass(frozen=True, slots=True)
class TrainingQuery:
    """An offline, point-in-time correct read: the events (inline rows or a CSV/Parquet file) joined with
    the service's features as of each event's `timestamp_key`; `expect[i]` holds the i-th event's values."""

    service: str
    events: Path | None = None
    expect_rows: int | None = None
    rows: tuple[dict[str, Any], ...] = ()  # inline events, instead of a file
    timestamp_key: str = "ts"
    expect: tuple[dict[str, Any], ...] = ()  # feature -> exact value (null: no value) or PRESENT, per event


@dataclass(frozen=True, slots=True)
class Misuse:
    kind: str
    name: str
    principal: str = ""
    service: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    flow: str = ""  # tamper: the flow of the record to change


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    origin: Path
    repo: Path
    workspace: str
    principals: tuple[Principal, ...] = ()
    streams: tuple[Stream, ...] = ()
    queries: tuple[Query, ...] = ()
    expect_flows: dict[str, int] = field(default_factory=dict)  # flow -> minimum audited messages
    misuse: tuple[Misuse, ...] = ()
    batch_files: tuple[BatchFile, ...] = ()
    materialize: tuple[Materialize, ...] = ()
    training: tuple[TrainingQuery, ...] = ()
    timeout_s: float = 60.0


class _Reader:
    """Typed access to one mapping of the document; every error names the path to the value."""

    def __init__(self, origin: str, where: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise ScenarioError(origin, where, f"expected a mapping, got {type(value).__name__}")
        self.origin, self.where, self.value = origin, where, value
        self._seen: set[str] = set()

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(self.origin, self._at(key), problem)

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self.value.get(key, default)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "required, a non-empty string" if value is None else "must be a non-empty string")
        return value

    def number(self, key: str, default: float | None = None, *, minimum: float = 0) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "required, a number" if value is None else f"must be a number, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return float(value)

    def whole(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            problem = "required, a whole number" if value is None else f"must be a whole number, got {value!r}"
            raise self.fail(key, problem)
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}

    def items(self, key: str) -> list[_Reader]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {type(value).__name__}")
        return [_Reader(self.origin, f"{self._at(key)}[{i}]", item) for i, item in enumerate(value)]

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.value) - self._seen)
        if unknown:
            raise ScenarioError(self.origin, self.where, f"unknown key(s) {', '.join(map(str, unknown))}")


def _principal(r: _Reader) -> Principal:
    roles = r.raw("roles", [])
    if not isinstance(roles, list) or not all(role in ROLES for role in roles):
        raise r.fail("roles", f"must be a list of roles from {', '.join(ROLES)}; got {roles!r}")
    principal = Principal(r.text("name"), tuple(roles))
    r.done()
    return principal


def _generator(r: _Reader) -> Generator:
    keys = _Reader(r.origin, f"{r.where}.keys", r.raw("keys"))
    distribution = KeyDistribution(keys.text("field"), keys.whole("values", minimum=1),
                                   keys.choice("distribution", DISTRIBUTIONS, "uniform"),
                                   keys.number("exponent", 1.2, minimum=1.0001), str(keys.raw("prefix", "")))
    keys.done()
    numbers, choices = [], []
    for name, rule in r.mapping("fields").items():
        where = f"{r.where}.fields.{name}"
        if isinstance(rule, dict) and set(rule) == {"uniform"} and isinstance(rule["uniform"], list) \
                and len(rule["uniform"]) == 2 and all(isinstance(x, int | float) for x in rule["uniform"]):
            numbers.append((name, float(rule["uniform"][0]), float(rule["uniform"][1])))
        elif isinstance(rule, dict) and set(rule) == {"choice"} and isinstance(rule["choice"], list) and rule["choice"]:
            choices.append((name, tuple(rule["choice"])))
        else:
            raise ScenarioError(r.origin, where, "must be {uniform: [low, high]} or {choice: [values...]}")
    generator = Generator(r.whole("seed"), r.whole("count", minimum=1), r.number("rate_per_s", minimum=0.001),
                          distribution, r.text("timestamp_field"), tuple(numbers), tuple(choices),
                          tuple(sorted(r.mapping("constants").items())))
    r.done()
    return generator


def _stream(r: _Reader) -> Stream:
    rows, generated = r.raw("rows"), r.raw("generator")
    if (rows is None) == (generated is None):
        raise r.fail("rows", "give either rows (a list of records) or generator, not both and not neither")
    if rows is not None and not (isinstance(rows, list) and rows and all(isinstance(x, dict) for x in rows)):
        raise r.fail("rows", "must be a non-empty list of records (mappings)")
    stream = Stream(r.text("source"), r.choice("via", ("topic", "http"), "topic"),
                    tuple(rows or ()), None if generated is None else _generator(
                        _Reader(r.origin, f"{r.where}.generator", generated)), str(r.raw("principal", "")))
    r.done()
    return stream


def _expected(r: _Reader, key: str = "expect") -> dict[str, Any]:
    """Feature -> value: `r[key]`, or with key "" the mapping `r` itself (then read whole)."""
    expect = r.mapping(key) if key else {str(k): v for k, v in r.value.items()}
    where = f"{key}." if key else ""
    for name, value in expect.items():
        if isinstance(value, str) and value != PRESENT and value.lower() == PRESENT:
            raise r.fail(f"{where}{name}", f"write '{PRESENT}' in lower case")
        if isinstance(value, list | dict):
            raise r.fail(f"{where}{name}", "must be a scalar value or 'present'")
    return expect


def _query(r: _Reader) -> Query:
    keys = r.mapping("keys")
    if not keys:
        raise r.fail("keys", "required: the join keys, e.g. {user_id: u1}")
    query = Query(r.text("service"), keys, str(r.raw("principal", "")), _expected(r), r.mapping("request_context"),
                  bool(r.raw("lineage", False)))
    r.done()
    return query


def _misuse(r: _Reader) -> Misuse:
    kind = r.choice("kind", MISUSE_KINDS)
    name = str(r.raw("name", kind))
    if kind == "unauthorized_read":
        misuse = Misuse(kind, name, r.text("principal"), r.text("service"), r.mapping("keys"))
    elif kind == "tamper_audit_record":
        flow = r.choice("flow", tuple(f.value for f in Flow), "F7")
        misuse = Misuse(kind, name, flow=flow)
    else:
        misuse = Misuse(kind, name)
    r.done()
    return misuse


def _training(r: _Reader, base: Path) -> TrainingQuery:
    events = r.raw("events")
    if isinstance(events, str) and events:
        path, rows = (base / events).resolve(), ()
    elif isinstance(events, list) and events and all(isinstance(e, dict) for e in events):
        path, rows = None, tuple(events)
    else:
        raise r.fail("events", "required: a CSV/Parquet file (relative to the scenario) or a non-empty list of rows")
    expect = r.items("expect")
    if rows and len(expect) > len(rows):
        raise r.fail("expect", f"{len(expect)} expectation(s) for {len(rows)} event(s): one mapping per event, "
                               "in the events' order")
    query = TrainingQuery(r.text("service"), path, None if r.raw("expect_rows") is None else r.whole("expect_rows"),
                          rows, r.text("timestamp_key", "ts"), tuple(_expected(e, "") for e in expect))
    r.done()
    return query


def _materialize(r: _Reader) -> Materialize:
    step = Materialize(r.text("feature_view"), _iso(r, "start"), _iso(r, "end"), str(r.raw("principal", "")))
    if utc_instant(step.end) <= utc_instant(step.start):
        raise r.fail("end", f"must be after start ({step.start}), got {step.end}")
    r.done()
    return step


def utc_instant(text: str) -> datetime:
    """An ISO-8601 time; UTC when it names no zone (as the gateway reads it)."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(r: _Reader, key: str) -> str:
    value = r.raw(key)
    if isinstance(value, datetime | date):  # YAML reads unquoted times and dates itself
        value = value.isoformat()
    if not isinstance(value, str):
        raise r.fail(key, "required, an ISO-8601 time" if value is None else f"must be an ISO-8601 time, got {value!r}")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise r.fail(key, f"must be an ISO-8601 time, got {value!r}") from None
    return value


def _flows(r: _Reader) -> dict[str, int]:
    flows: dict[str, int] = {}
    for flow, rule in r.mapping("expect_flows").items():
        where = f"expect_flows.{flow}"
        if flow not in {f.value for f in Flow}:
            raise ScenarioError(r.origin, where, "not a flow; flows are F1 .. F9")
        inner = _Reader(r.origin, where, rule)
        flows[flow] = inner.whole("min", minimum=1)
        inner.done()
    return dict(sorted(flows.items()))


def _relative(r: _Reader, key: str, base: Path) -> Path:
    return (base / r.text(key)).resolve()


def parse_scenario(text: str, origin: Path) -> Scenario:
    """The scenario in `text`; paths in it are relative to `origin`'s folder. ScenarioError says where."""
    label = str(origin)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ScenarioError(label, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    r = _Reader(label, "", document if document is not None else {})
    base = origin.parent
    scenario = Scenario(
        name=r.text("name"), description=str(r.raw("description", "")), origin=origin,
        repo=_relative(r, "repo", base), workspace=r.text("workspace", "prod"),
        principals=tuple(_principal(p) for p in r.items("principals")),
        streams=tuple(_stream(s) for s in r.items("streams")),
        queries=tuple(_query(q) for q in r.items("queries")),
        expect_flows=_flows(r), misuse=tuple(_misuse(m) for m in r.items("misuse")),
        batch_files=tuple(BatchFile(b.text("source"), _relative(b, "path", base)) for b in r.items("batch_files")),
        materialize=tuple(_materialize(m) for m in r.items("materialize")),
        training=tuple(_training(t, base) for t in r.items("training_data")),
        timeout_s=r.number("timeout_s", 60.0, minimum=1),
    )
    r.done()
    _check_references(scenario, label)
    return scenario


def _check_references(scenario: Scenario, label: str) -> None:
    """Names used in steps must be declared: a principal a query uses, a generator's fields."""
    known = {p.name for p in scenario.principals}
    for i, query in enumerate(scenario.queries):
        if query.principal and query.principal not in known:
            raise ScenarioError(label, f"queries[{i}].principal", f"'{query.principal}' is not in principals")
    for i, stream in enumerate(scenario.streams):
        if stream.principal and stream.principal not in known:
            raise ScenarioError(label, f"streams[{i}].principal", f"'{stream.principal}' is not in principals")
    for i, step in enumerate(scenario.materialize):
        if step.principal and step.principal not in known:
            raise ScenarioError(label, f"materialize[{i}].principal", f"'{step.principal}' is not in principals")
    for i, misuse in enumerate(scenario.misuse):
        if misuse.principal and misuse.principal not in known:
            raise ScenarioError(label, f"misuse[{i}].principal", f"'{misuse.principal}' is not in principals")
    if len({m.name for m in scenario.misuse}) != len(scenario.misuse):
        raise ScenarioError(label, "misuse", "misuse step names must be unique")


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read the scenario: {exc.strerror}") from None
    scenario = parse_scenario(text, path.resolve())
    if not scenario.repo.is_dir():
        raise ScenarioError(str(path), "repo", f"{scenario.repo} is not a folder")
    return scenario


def event_spacing(generator: Generator) -> timedelta:
    return timedelta(seconds=1 / generator.rate_per_s)
