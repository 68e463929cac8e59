"""Validates deploy/'s manifests offline (`.ci/run`; docs/deployment.md).

- deploy/k8s: every resource, and the ConfigMap its kustomization.yaml generates, against
  Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: an unknown field fails), and
  the kustomization's references (files, items of the generated ConfigMap) resolved.
- deploy/kserve: every ClusterServingRuntime and InferenceService against KServe's own types, as
  the KServe SDK (kserve, on PyPI) defines them: each field must be one of its type's (unknown
  fields fail, as kubectl's strict validation), of the right kind, required ones present
  (the SDK's own constructors build each object, which checks them); the Kubernetes types
  inside (containers, env, resources...) by the Kubernetes client's definitions.
- deploy/grafana/ferroserve.json: importable (panels with Prometheus queries over the
  datasource variable), and every metric it queries is one ferroserve exports: with
  `--metrics FILE`, a scrape of a running server's /metrics.

Run with the KServe SDK's Python: target/py-kserve/bin/python deploy/validate.py [--metrics F]
"""

import argparse
import json
import os
import re
import sys

import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K8S_VERSION = "1.30.0"
failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- Kubernetes --------------------------------------------------------------------------
def validate_k8s(doc, where):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(where, f"{'.'.join(str(p) for p in e.path)}: {e.message}")
    except kubernetes_validate.utils.SchemaNotFoundError as e:
        fail(where, f"no Kubernetes schema for it: {e}")


def check_k8s():
    k8s = os.path.join(HERE, "k8s")
    kust = yaml.safe_load(open(os.path.join(k8s, "kustomization.yaml")))
    resources = {}
    for name in kust["resources"]:
        for doc in documents(os.path.join(k8s, name)):
            where = f"k8s/{name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            validate_k8s(doc, where)
            resources[(doc["kind"], doc["metadata"]["name"])] = doc
    listed = set(kust["resources"]) | {"kustomization.yaml"}
    for f in os.listdir(k8s):
        if f.endswith(".yaml") and f not in listed:
            fail(f"k8s/{f}", "not in kustomization.yaml's resources")
    # The generated ConfigMaps: built as kustomize builds them, then validated.
    for gen in kust.get("configMapGenerator", []):
        data, binary = {}, {}
        for spec in gen.get("files", []):
            key, _, rel = spec.partition("=")
            path = os.path.normpath(os.path.join(k8s, rel or key))
            if not os.path.isfile(path):
                fail(f"k8s/kustomization.yaml {gen['name']}", f"{rel}: no such file")
                continue
            raw = open(path, "rb").read()
            try:
                data[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                binary[key] = raw
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
        if binary:
            import base64

            doc["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
        size = sum(len(v.encode()) for v in data.values()) + sum(len(v) for v in binary.values())
        if size > 1 << 20:
            fail(f"configMapGenerator {gen['name']}", f"{size} bytes: a ConfigMap holds at most 1 MiB")
        validate_k8s(doc, f"configMapGenerator {gen['name']}")
        resources[("ConfigMap", gen["name"])] = doc
    # What the Deployment mounts exists, key by key; its probes hit the v2 health routes.
    for (kind, name), doc in resources.items():
        if kind != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        for vol in pod.get("volumes", []):
            cm = vol.get("configMap")
            if not cm:
                continue
            target = resources.get(("ConfigMap", cm["name"]))
            if target is None:
                fail(f"Deployment/{name}", f"volume {vol['name']}: no ConfigMap {cm['name']}")
                continue
            keys = set(target.get("data", {})) | set(target.get("binaryData", {}))
            for item in cm.get("items", []):
                if item["key"] not in keys:
                    fail(f"Deployment/{name}", f"volume {vol['name']}: {cm['name']} has no key {item['key']}")
        c = pod["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = c.get(probe, {}).get("httpGet", {}).get("path", "")
            if not path.startswith("/v2/health/"):
                fail(f"Deployment/{name}", f"{probe} is not on a v2 health route: {path!r}")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        cfg = resources.get(("ConfigMap", "ferroserve-config"), {}).get("data", {}).get("ferroserve.toml", "")
        drain = float(re.search(r"^drain-timeout\s*=\s*([0-9.]+)", cfg, re.M).group(1)) if "drain-timeout" in cfg else 5
        pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pause = float(pre[-1]) if pre[:1] == ["sleep"] else 0
        if grace < pause + drain:
            fail(f"Deployment/{name}", f"terminationGracePeriodSeconds {grace} < preStop {pause} + drain {drain}")
    print(f"k8s: {len(resources)} resources valid against Kubernetes {K8S_VERSION}")


# --- KServe ------------------------------------------------------------------------------
def sdk_class(name):
    import kserve.models
    import kubernetes.client.models

    for mod in (kserve.models, kubernetes.client.models):
        if hasattr(mod, name):
            return getattr(mod, name)
    return None


PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def walk(value, typ, where):
    """Checks `value` against an SDK type string ('V1Container', 'list[V1EnvVar]', ...; the
    Kubernetes client spells them 'List[...]', 'Dict[str, ...]')."""
    typ = re.sub(r"^List\[(.*)\]$", r"list[\1]", typ)
    typ = re.sub(r"^Dict\[(.*)\]$", r"dict(\1)", typ)
    if typ.startswith("list["):
        if not isinstance(value, list):
            return fail(where, f"expected a list ({typ})")
        for i, v in enumerate(value):
            walk(v, typ[5:-1], f"{where}[{i}]")
        return
    if typ.startswith("dict("):
        if not isinstance(value, dict):
            return fail(where, f"expected a map ({typ})")
        inner = typ[5:-1].split(", ", 1)[1]
        for k, v in value.items():
            walk(v, inner, f"{where}.{k}")
        return
    if typ in PRIMITIVES:
        if typ == "int" and isinstance(value, bool) or not isinstance(value, PRIMITIVES[typ]):
            fail(where, f"expected {typ}, got {type(value).__name__}")
        return
    if typ == "ResourceQuantity" or typ.endswith("Quantity") or typ == "IntOrString":
        if not isinstance(value, (str, int, float)):
            fail(where, f"expected a quantity, got {type(value).__name__}")
        return
    cls = sdk_class(typ)
    if cls is None:
        return fail(where, f"the SDK has no type {typ}")
    if not isinstance(value, dict):
        return fail(where, f"expected an object ({typ})")
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            fail(where, f"unknown field {key!r} for {typ} (fields: {', '.join(sorted(by_json))})")
            continue
        walk(v, cls.openapi_types[by_json[key]], f"{where}.{key}")
    # The SDK's own constructor refuses a required field left out (and checked enums).
    try:
        cls(**{by_json[k]: v for k, v in value.items() if k in by_json})
    except (ValueError, TypeError) as e:
        fail(where, f"the SDK refuses it as {typ}: {e}")


def check_kserve():
    kinds = {
        "ClusterServingRuntime": "V1alpha1ClusterServingRuntime",
        "InferenceService": "V1beta1InferenceService",
    }
    kserve_dir = os.path.join(HERE, "kserve")
    runtimes, services = [], []
    for f in sorted(os.listdir(kserve_dir)):
        if not f.endswith(".yaml"):
            continue
        for doc in documents(os.path.join(kserve_dir, f)):
            where = f"kserve/{f} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            typ = kinds.get(doc.get("kind"))
            if typ is None:
                fail(where, f"unexpected kind {doc.get('kind')}")
                continue
            want_api = {"ClusterServingRuntime": "serving.kserve.io/v1alpha1", "InferenceService": "serving.kserve.io/v1beta1"}
            if doc.get("apiVersion") != want_api[doc["kind"]]:
                fail(where, f"apiVersion {doc.get('apiVersion')}, expected {want_api[doc['kind']]}")
            walk(doc, typ, where)
            (runtimes if doc["kind"] == "ClusterServingRuntime" else services).append((where, doc))
    # Every InferenceService names a runtime here that supports its format and protocol.
    by_name = {d["metadata"]["name"]: d for _, d in runtimes}
    formats = set()
    for where, rt in runtimes:
        spec = rt["spec"]
        if not {"v2", "grpc-v2"} <= set(spec.get("protocolVersions", [])):
            fail(where, "protocolVersions must hold v2 and grpc-v2")
        args = " ".join(spec["containers"][0].get("args", []))
        if "/mnt/models" not in args or "{{.Name}}" not in args:
            fail(where, "the container must serve /mnt/models under {{.Name}}")
        formats |= {m.get("name") for m in spec.get("supportedModelFormats", [])}
    for want in ("xgboost", "lightgbm", "sklearn", "onnx"):
        if want not in formats:
            fail("kserve", f"no runtime supports {want}")
    seen = set()
    for where, isvc in services:
        model = isvc["spec"]["predictor"]["model"]
        rt = by_name.get(model.get("runtime"))
        if rt is None:
            fail(where, f"runtime {model.get('runtime')!r} is not one of {sorted(by_name)}")
            continue
        fmt = model["modelFormat"]["name"]
        if fmt not in {m.get("name") for m in rt["spec"].get("supportedModelFormats", [])}:
            fail(where, f"{rt['metadata']['name']} does not support {fmt}")
        if model.get("protocolVersion", "v1") not in rt["spec"]["protocolVersions"]:
            fail(where, f"protocolVersion {model.get('protocolVersion')} not in the runtime's")
        seen.add(fmt)
    for want in ("xgboost", "lightgbm", "sklearn", "onnx"):
        if want not in seen:
            fail("kserve", f"no InferenceService example for {want}")
    print(f"kserve: {len(runtimes)} runtime(s), {len(services)} InferenceService(s) valid against the KServe SDK's types")


# --- Grafana -----------------------------------------------------------------------------
def check_grafana(metrics_file):
    path = os.path.join(HERE, "grafana", "ferroserve.json")
    dash = json.load(open(path))
    for key in ("title", "panels", "templating", "schemaVersion", "uid"):
        if key not in dash:
            fail("grafana", f"no {key!r}")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    exprs = []
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        targets = p.get("targets", [])
        if not targets:
            fail(f"grafana panel {p.get('title')!r}", "no query")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"grafana panel {p.get('title')!r}", "datasource is not the ${datasource} variable")
        for t in targets:
            exprs.append((p.get("title"), t.get("expr", "")))
            for var in re.findall(r"\$(\w+)", t.get("expr", "")):
                if var not in variables and not var.startswith("__"):
                    fail(f"grafana panel {p.get('title')!r}", f"unknown variable ${var}")
    names = set()
    for _, e in exprs:
        names |= set(re.findall(r"\b(ferroserve_[a-z_]+)", e))
    if metrics_file:
        exported = set()
        for line in open(metrics_file):
            m = re.match(r"# TYPE (\w+) (\w+)", line)
            if m:
                exported.add(m.group(1))
                if m.group(2) == "histogram":
                    exported |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
        for n in sorted(names - exported):
            fail("grafana", f"queries {n}, which ferroserve does not export")
        # Every label a query groups by or matches on is one its metrics carry.
        labels = {}
        for line in open(metrics_file):
            m = re.match(r"(ferroserve_\w+)\{(.*)\}", line)
            if m:
                labels.setdefault(m.group(1), set()).update(re.findall(r"(\w+)=\"", m.group(2)))
        for title, e in exprs:
            used = set()
            for group in re.findall(r"by \(([^)]*)\)", e):
                used |= {g.strip() for g in group.split(",")} - {"le"}
            used |= set(re.findall(r"(\w+)\s*(?:=~|!=|=)\s*\"", e))
            metrics = re.findall(r"\b(ferroserve_[a-z_]+)", e)
            if any(n not in labels for n in metrics):
                continue  # no series in the scrape (nothing failed to load, say): nothing to check
            have = set().union(*(labels[n] for n in metrics))
            for label in sorted(used - have):
                fail(f"grafana panel {title!r}", f"label {label!r} is on none of its metrics")
        print(f"grafana: {len(exprs)} queries over {len(names)} metrics, all exported by the server")
    else:
        print(f"grafana: {len(exprs)} queries (not checked against a server: no --metrics)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", help="a scrape of a running ferroserve's /metrics")
    args = ap.parse_args()
    check_k8s()
    check_kserve()
    check_grafana(args.metrics)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print("deploy/: every manifest valid")
