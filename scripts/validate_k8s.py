#!/usr/bin/env python3
"""Renders every kustomization under deploy/k8s and checks what it renders.

Run by scripts/validate-k8s, which provides the tools (kubectl for `kubectl kustomize`, and
the Python packages kubernetes-validate, jsonschema and PyYAML). Three kinds of checks on
every rendered object:

1. Kubernetes objects against the Kubernetes OpenAPI schemas that kubernetes-validate ships,
   strict (an unknown field is an error), for each pinned Kubernetes version.
2. KEDA objects (ScaledObject, TriggerAuthentication) against deploy/k8s/schemas/, and also
   against real KEDA CRDs when KEDA_CRDS names a file of them.
3. jobfleet's own rules across objects: a worker's grace period outlasts its drain timeout,
   its group is in the fleet file, a ScaledObject watches that group's queue, a master on a
   non-loopback address has [auth], the probes hit the real endpoints, every JOBFLEET_*
   variable is one the binaries read.

Then every fixture under deploy/k8s/tests/ (a kustomization with a deliberate mistake and a
line `# expect: <text>`) must be rejected with an error containing that text, which proves
each kind of check really checks.

Rendering happens in a temporary copy of deploy/k8s in which every `secrets.env` is replaced
by its `secrets.env.example`, so real credentials are never read or printed.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The Kubernetes versions the manifests must be valid for: the oldest one we promise and the
# newest the pinned kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
KEDA_API_VERSION = "keda.sh/v1alpha1"

# SPEC §5: every JOBFLEET_* variable the master and the worker read (and the web UI's
# session key, common/src/config.rs `env::UI_SESSION_SECRET`).
JOBFLEET_ENV = {
    "JOBFLEET_CONFIG",
    "JOBFLEET_NAMESPACE",
    "JOBFLEET_AMQP_URL",
    "JOBFLEET_REDIS_URL",
    "JOBFLEET_LISTEN",
    "JOBFLEET_GROUPS",
    "JOBFLEET_CONCURRENCY",
    "JOBFLEET_METRICS_LISTEN",
    "JOBFLEET_UI_SESSION_SECRET",
}
DEFAULT_NAMESPACE = "jobfleet"
DEFAULT_GROUP = "default"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
# The master's health endpoints (SPEC §4): liveness never depends on Redis or RabbitMQ.
MASTER_PROBES = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
PROBES = tuple(MASTER_PROBES)
DEFAULT_DRAIN_SECONDS = 30.0  # jobfleet-worker --drain-timeout
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds
# What a worker needs after its drain: hand back the rest, close, deregister.
HAND_BACK_SECONDS = 10


class ValidationFailed(Exception):
    """The checks themselves cannot run as asked (a fixture without its expectation)."""


# --- durations, as humantime (the binaries' parser) reads the common ones ------------------

_UNITS = {
    name: seconds
    for names, seconds in (
        ("ns nsec", 1e-9),
        ("us usec µs", 1e-6),
        ("ms msec", 1e-3),
        ("s sec secs second seconds", 1),
        ("m min mins minute minutes", 60),
        ("h hr hrs hour hours", 3600),
        ("d day days", 86400),
        ("w week weeks", 604800),
    )
    for name in names.split()
}
_PART = re.compile(r"\s*(\d+)\s*([a-zµ]+)", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "30s", "2m" or "1h 30m"; ValueError otherwise."""
    seconds, position = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != position or match.group(2) not in _UNITS:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    else:
        if position and not text[position:].strip():
            return seconds
    raise ValueError(f"not a duration: {text!r}")


# --- rendering -------------------------------------------------------------------------------


def render(kubectl: str, directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` renders."""
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip() or f"exit status {result.returncode}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


class RenderError(Exception):
    """kustomize refused the kustomization."""


def staged_copy(source: Path, into: Path) -> Path:
    """A copy of deploy/k8s whose secrets.env files are their committed examples."""
    target = into / "k8s"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("secrets.env"))
    for example in target.rglob("secrets.env.example"):
        shutil.copyfile(example, example.with_name("secrets.env"))
    return target


def kustomizations(root: Path) -> list[Path]:
    """Every directory under ROOT with a kustomization.yaml, fixtures last."""
    found = sorted(p.parent for p in root.rglob("kustomization.yaml"))
    fixtures = root / "tests"
    return [d for d in found if fixtures not in d.parents] + [d for d in found if fixtures in d.parents]


# --- schemas ------------------------------------------------------------------------------------


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


def error_text(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{where}: {error.message}"


def kubernetes_errors(obj: dict, versions: tuple[str, ...]) -> list[str]:
    """Errors of a built-in object against each Kubernetes version's strict schema."""
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"Kubernetes {version} schema: {error_text(e)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"Kubernetes {version}: {e.message}")
    return errors


@dataclass
class KedaSchemas:
    """Validators per KEDA kind: this repository's schema, plus real CRDs when given."""

    validators: dict[str, list[tuple[str, jsonschema.Validator]]] = field(default_factory=dict)

    def add(self, kind: str, source: str, schema: dict) -> None:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        self.validators.setdefault(kind, []).append((source, validator))

    def errors(self, obj: dict) -> list[str]:
        kind = obj.get("kind")
        if obj.get("apiVersion") != KEDA_API_VERSION:
            return [f"apiVersion {obj.get('apiVersion')!r}: KEDA's is {KEDA_API_VERSION}"]
        errors = []
        for source, validator in self.validators.get(kind, []):
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
                errors.append(f"{source}: {error_text(error)}")
        return errors + replica_bounds(obj)


def replica_bounds(obj: dict) -> list[str]:
    """The ScaledObject CRD's CEL rule, which no JSON Schema can say."""
    spec = obj.get("spec") or {}
    if obj.get("kind") != "ScaledObject" or "minReplicaCount" not in spec:
        return []
    low, high = spec["minReplicaCount"], spec.get("maxReplicaCount", 100)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        return [f"minReplicaCount {low} must be less than or equal to maxReplicaCount {high}"]
    return []


def load_keda_schemas(schema_file: Path, crd_file: str | None) -> KedaSchemas:
    schemas = KedaSchemas()
    own = yaml.safe_load(schema_file.read_text())
    for kind in KEDA_KINDS:
        schemas.add(kind, f"KEDA schema ({schema_file.name})", own[kind])
    if crd_file:
        for doc in yaml.safe_load_all(Path(crd_file).read_text()):
            for crd in doc.get("items", [doc]) if doc else []:
                add_crd(schemas, crd)
    return schemas


def add_crd(schemas: KedaSchemas, crd: dict) -> None:
    """Adds the served v1alpha1 schema of a KEDA CRD, made strict like kubectl's strict mode."""
    kind = crd.get("spec", {}).get("names", {}).get("kind")
    if crd.get("kind") != "CustomResourceDefinition" or kind not in KEDA_KINDS:
        return
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1alpha1":
            schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schemas.add(kind, f"KEDA CRD {crd['metadata']['name']}", schema)


def strict(schema: dict) -> dict:
    """An OpenAPI v3 CRD schema that rejects unknown fields wherever the CRD lists the fields
    (unless it says x-kubernetes-preserve-unknown-fields), as kubectl's strict validation does."""
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for child in properties.values():
            strict(child)
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        for child in schema.get(key) or []:
            strict(child)
    return schema


# --- jobfleet's own rules -----------------------------------------------------------------------


@dataclass
class Rendered:
    """One kustomization's objects, indexed for the cross-object rules."""

    objects: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict | None:
        return next((o for o in self.of_kind(kind) if o["metadata"].get("name") == name), None)

    def containers(self) -> list[tuple[dict, dict]]:
        """(Deployment, container) for every container of every Deployment."""
        return [(d, c) for d in self.of_kind("Deployment") for c in containers(d)]


def containers(deployment: dict) -> list[dict]:
    return deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def program(container: dict) -> str:
    argv = (container.get("command") or []) + (container.get("args") or [])
    return Path(argv[0]).name if argv else ""


def env_of(container: dict) -> dict[str, str | None]:
    """Plain values by name; None for values from a secret or elsewhere."""
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def flag(container: dict, name: str) -> list[str]:
    """Every value of `--name V` or `--name=V` in the container's command line."""
    argv = (container.get("command") or []) + (container.get("args") or [])
    values = []
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(name + "="):
            values.append(arg[len(name) + 1 :])
    return values


def setting(container: dict, flag_name: str | None, env_name: str, default: str | None):
    """A setting as the binaries resolve it: flag over environment over default."""
    if flag_name and (values := flag(container, flag_name)):
        return values[-1]
    return env_of(container).get(env_name, default)


@dataclass
class FleetFile:
    """The fleet file a container reads: `config` is None where this render cannot tell
    (the ConfigMap it mounts is not part of this kustomization), `problem` says why it is
    unusable."""

    config: dict | None
    problem: str | None = None


def fleet_file(rendered: Rendered, deployment: dict, container: dict) -> FleetFile:
    path = setting(container, "--config", "JOBFLEET_CONFIG", None)
    if not path:
        return FleetFile({})  # zero config: the built-in `default` group
    volumes = deployment["spec"]["template"]["spec"].get("volumes") or []
    for mount in container.get("volumeMounts") or []:
        directory = mount["mountPath"].rstrip("/") + "/"
        volume = next((v for v in volumes if v["name"] == mount["name"]), {})
        if not path.startswith(directory) or "configMap" not in volume:
            continue
        config_map = rendered.named("ConfigMap", volume["configMap"]["name"])
        if config_map is None:
            return FleetFile(None)
        text = (config_map.get("data") or {}).get(path[len(directory) :])
        if text is None:
            return FleetFile(
                None, f"ConfigMap {config_map['metadata']['name']} has no {path[len(directory) :]}"
            )
        return FleetFile(tomllib.loads(text))
    return FleetFile(None, f"the fleet file {path} (JOBFLEET_CONFIG) is not in a ConfigMap it mounts")


def fleet_namespace(container: dict, fleet: dict) -> str:
    return env_of(container).get("JOBFLEET_NAMESPACE") or fleet.get("namespace") or DEFAULT_NAMESPACE


def fleet_groups(fleet: dict) -> set[str]:
    return set(fleet.get("groups") or {DEFAULT_GROUP: {}})


def worker_groups(container: dict) -> list[str]:
    values = flag(container, "--group") or [env_of(container).get("JOBFLEET_GROUPS") or DEFAULT_GROUP]
    return [g.strip() for value in values for g in value.split(",") if g.strip()]


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_of(address: str) -> int | None:
    tail = address.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def container_port(container: dict, port) -> int | None:
    """A probe's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port), None)


def env_name_errors(container: dict) -> list[str]:
    return [
        f"container {container['name']}: {name} is not a setting jobfleet reads (SPEC §5: "
        f"{', '.join(sorted(JOBFLEET_ENV))})"
        for name in env_of(container)
        if name.startswith("JOBFLEET_") and name not in JOBFLEET_ENV
    ]


def stop_seconds(container: dict) -> float:
    """Seconds a preStop `sleep N` hook takes out of the grace period before SIGTERM."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    command = (pre_stop.get("exec") or {}).get("command") or []
    if len(command) == 2 and Path(command[0]).name == "sleep":
        text = command[1]
        return float(text) if text.isdigit() else parse_duration(text)
    return float((pre_stop.get("sleep") or {}).get("seconds", 0))


def worker_errors(rendered: Rendered, deployment: dict, container: dict) -> list[str]:
    errors = env_name_errors(container)
    pod = deployment["spec"]["template"]["spec"]
    drain_text = (flag(container, "--drain-timeout") or [None])[-1]
    drain = parse_duration(drain_text) if drain_text else DEFAULT_DRAIN_SECONDS
    grace = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    needed = stop_seconds(container) + drain + HAND_BACK_SECONDS
    if grace < needed:
        errors.append(
            f"terminationGracePeriodSeconds {grace} does not outlast the drain: --drain-timeout "
            f"{drain:g}s + {HAND_BACK_SECONDS}s to hand back"
            + (f" + preStop {stop_seconds(container):g}s" if stop_seconds(container) else "")
            + f" = {needed:g}s; a SIGKILL would cut the drain short"
        )
    fleet = fleet_file(rendered, deployment, container)
    if fleet.problem:
        errors.append(fleet.problem)
    if fleet.config is not None:
        known = fleet_groups(fleet.config)
        errors += [
            f"group {group!r} is not in the fleet file (its groups: {', '.join(sorted(known))})"
            for group in worker_groups(container)
            if group not in known
        ]
    return errors + metrics_errors(container)


def metrics_errors(container: dict) -> list[str]:
    listen = setting(container, "--metrics-listen", "JOBFLEET_METRICS_LISTEN", DEFAULT_METRICS_LISTEN)
    named = [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == "metrics"]
    if listen == "off":
        probed = [probe for probe in PROBES if (container.get(probe) or {}).get("httpGet")]
        return [f"{probe} GETs the worker's /metrics, which is off" for probe in probed]
    if not named:
        return []
    errors = []
    if is_loopback(listen):
        errors.append(f"metrics listen on {listen}: loopback, so Prometheus cannot scrape it")
    if port_of(listen) not in named:
        errors.append(f"metrics listen on {listen}, but the port named metrics is {named[0]}")
    return errors


def master_errors(rendered: Rendered, deployment: dict, container: dict) -> list[str]:
    errors = env_name_errors(container)
    fleet = fleet_file(rendered, deployment, container)
    if fleet.problem:
        errors.append(fleet.problem)
    if fleet.config is None:
        return errors
    listen = setting(container, "--listen", "JOBFLEET_LISTEN", fleet.config.get("listen", DEFAULT_LISTEN))
    auth = fleet.config.get("auth")
    if not is_loopback(listen) and not auth:
        errors.append(
            f"listens on {listen} without [auth] in the fleet file: jobfleet-master exits 64 "
            "(add tokens, or [auth] disabled = true)"
        )
    if auth and not auth.get("disabled"):
        errors += token_errors(auth.get("tokens") or [])
    errors += probe_errors(container, port_of(listen))
    return errors


def token_errors(tokens: list[dict]) -> list[str]:
    if not tokens:
        return ["[auth] has no tokens and is not disabled: jobfleet-master exits 64"]
    errors = [
        f"[auth] token {t.get('name')!r}: sha256 is not 64 hex digits"
        for t in tokens
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(t.get("sha256", "")))
    ]
    hashes = [str(t.get("sha256", "")).lower() for t in tokens]
    if len(set(hashes)) != len(hashes):
        errors.append("[auth] lists one hash twice: jobfleet-master exits 64")
    return errors


def probe_errors(container: dict, listen_port: int | None) -> list[str]:
    errors = []
    for probe, path in MASTER_PROBES.items():
        http = (container.get(probe) or {}).get("httpGet")
        if http is None:
            if probe != "startupProbe":
                errors.append(f"{probe} missing: it should GET {path}")
            continue
        if http.get("path") != path:
            errors.append(f"{probe} GETs {http.get('path')}: the master's is {path}")
        if container_port(container, http.get("port")) != listen_port:
            errors.append(f"{probe} port {http.get('port')} is not the listen port {listen_port}")
    return errors


def scaled_object_errors(rendered: Rendered, scaled: dict) -> list[str]:
    target_name = scaled["spec"]["scaleTargetRef"]["name"]
    deployment = rendered.named("Deployment", target_name)
    if deployment is None:
        return [f"scaleTargetRef names Deployment {target_name}, which is not rendered here"]
    worker = next((c for c in containers(deployment) if program(c) == "jobfleet-worker"), None)
    if worker is None:
        return [f"scales {target_name}, which runs no jobfleet-worker"]
    groups = worker_groups(worker)
    if len(groups) != 1:
        return [f"scales {target_name}, which serves {len(groups)} groups: one group per scaled Deployment"]
    fleet = fleet_file(rendered, deployment, worker).config
    # Without the fleet file in this render, the queue's namespace is unknown here.
    queue = None if fleet is None else f"{fleet_namespace(worker, fleet)}.group.{groups[0]}"
    errors = []
    for trigger in scaled["spec"]["triggers"]:
        errors += trigger_errors(rendered, trigger, queue, groups[0])
    return errors


def trigger_errors(rendered: Rendered, trigger: dict, queue: str | None, group: str) -> list[str]:
    metadata = trigger.get("metadata") or {}
    errors = []
    if trigger["type"] == "rabbitmq" and queue and metadata.get("queueName") != queue:
        errors.append(
            f"rabbitmq trigger watches queue {metadata.get('queueName')!r}, but the worker "
            f"consumes {queue!r} (<fleet namespace>.group.<group>)"
        )
    if trigger["type"] == "prometheus" and f'group="{group}"' not in metadata.get("query", ""):
        errors.append(f'prometheus trigger query does not select group="{group}"')
    auth = (trigger.get("authenticationRef") or {}).get("name")
    # A partial kustomization (one group's) renders no TriggerAuthentication at all.
    authentications = rendered.of_kind("TriggerAuthentication")
    if auth and authentications and rendered.named("TriggerAuthentication", auth) is None:
        errors.append(f"authenticationRef names TriggerAuthentication {auth}, which is not rendered here")
    return errors


def secret_key_errors(rendered: Rendered) -> list[str]:
    """Keys taken from a rendered Secret must be in it (the base renders no Secret)."""
    wanted = [
        (name_of(deployment), ref["name"], ref["key"])
        for deployment, container in rendered.containers()
        for env in container.get("env") or []
        if (ref := (env.get("valueFrom") or {}).get("secretKeyRef"))
    ]
    for auth in rendered.of_kind("TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef") or []:
            wanted.append((name_of(auth), ref["name"], ref["key"]))
    errors = []
    for owner, secret_name, key in wanted:
        secret = rendered.named("Secret", secret_name)
        keys = set((secret or {}).get("data") or {}) | set((secret or {}).get("stringData") or {})
        if secret is not None and key not in keys:
            errors.append(f"{owner}: Secret {secret_name} has no key {key!r}")
    return errors


def jobfleet_errors(rendered: Rendered) -> list[str]:
    errors = []
    checks = {"jobfleet-worker": worker_errors, "jobfleet-master": master_errors}
    for deployment, container in rendered.containers():
        if check := checks.get(program(container)):
            errors += [f"{name_of(deployment)}: {e}" for e in check(rendered, deployment, container)]
    for scaled in rendered.of_kind("ScaledObject"):
        errors += [f"{name_of(scaled)}: {e}" for e in scaled_object_errors(rendered, scaled)]
    return errors + secret_key_errors(rendered)


# --- one kustomization ---------------------------------------------------------------------------


def check_kustomization(kubectl: str, directory: Path, keda: KedaSchemas) -> tuple[list[dict], list[str]]:
    """The rendered objects and every error found in them."""
    try:
        objects = render(kubectl, directory)
    except RenderError as e:
        return [], [f"kustomize: {e}"]
    errors = []
    for obj in objects:
        if obj.get("kind") in KEDA_KINDS:
            found = keda.errors(obj)
        else:
            found = kubernetes_errors(obj, KUBERNETES_VERSIONS)
        errors += [f"{name_of(obj)}: {e}" for e in found]
    if not errors:
        # The cross-object rules assume schema-valid objects.
        try:
            errors = jobfleet_errors(Rendered(objects))
        except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as e:
            errors = [f"jobfleet rules: cannot read the objects: {type(e).__name__}: {e}"]
    return objects, errors


def expected_error(directory: Path) -> str:
    for line in (directory / "kustomization.yaml").read_text().splitlines():
        if line.startswith("# expect:"):
            return line.split(":", 1)[1].strip()
    raise ValidationFailed(f"fixture {directory} has no '# expect: <text>' line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default="kubectl", help="kubectl with `kustomize` (default: kubectl)")
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parent.parent / "deploy" / "k8s"
    )
    args = parser.parse_args()
    keda = load_keda_schemas(args.root / "schemas" / "keda.sh-v1alpha1.yaml", os.environ.get("KEDA_CRDS"))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="validate-k8s-") as temp:
        staged = staged_copy(args.root, Path(temp))
        for directory in kustomizations(staged):
            relative = directory.relative_to(staged)
            objects, errors = check_kustomization(args.kubectl, directory, keda)
            if relative.parts[0] == "tests":
                failures += judge_fixture(relative, directory, errors)
            elif errors:
                failures += 1
                print(f"FAIL {relative}:")
                for error in errors:
                    print(f"  {error}")
            else:
                kinds = sorted({o["kind"] for o in objects})
                print(f"ok   {relative}: {len(objects)} objects ({', '.join(kinds)})")
    versions = " and ".join(KUBERNETES_VERSIONS)
    sources = "KEDA schema" + (" + KEDA_CRDS" if os.environ.get("KEDA_CRDS") else "")
    if failures:
        print(f"validate-k8s: {failures} failed (Kubernetes {versions}, {sources})")
        return 1
    print(
        f"validate-k8s: all kustomizations valid, every broken fixture rejected (Kubernetes {versions}, {sources})"
    )
    return 0


def judge_fixture(relative: Path, directory: Path, errors: list[str]) -> int:
    """0 when the fixture was rejected for the reason it expects, else 1."""
    expected = expected_error(directory)
    if any(expected in e for e in errors):
        print(f"ok   {relative}: rejected as expected ({expected})")
        return 0
    print(f"FAIL {relative}: expected an error containing {expected!r}, got:")
    for error in errors or ["no error at all: the check it exercises does not work"]:
        print(f"  {error}")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValidationFailed as e:
        print(f"validate-k8s: {e}", file=sys.stderr)
        sys.exit(2)
