"""deploy/kubernetes/ is valid Kubernetes and runs the arrangement compose runs.

Every object is validated strictly (no unknown field) against the schemas of one named
Kubernetes version, offline (kubernetes-validate bundles them). The kustomizations use only
`resources`, `images` and `configMapGenerator`, which `render` below applies; where kubectl
is installed, its own kustomize must render the same objects. Then what a schema cannot
see: the pods set only variables Warden reads, run the image's roles, route the long polls
and websockets to live with deploy/nginx's own file, probe paths that answer, and every
reference (Service, PDB, HPA, volume, Secret, Ingress) finds its object.
"""

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gunicorn.config
import kubernetes_validate
import pytest
import yaml
from django.urls import Resolver404, resolve

from governance.console.routing import websocket_urlpatterns
from remediation.api.long_poll import PATH as LONG_POLL_PATH
from remediation.models import TARGET_ENV_PREFIX

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
MIGRATE = KUBERNETES / "migrate"
SECRET_EXAMPLE = KUBERNETES / "secret.example.yaml"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "warden.conf.template"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
SETTINGS = ROOT / "config" / "settings.py"

# The oldest Kubernetes the manifests are meant for (autoscaling/v2, policy/v1 PDBs).
KUBERNETES_VERSION = "1.31"
# The only kustomize features the manifests use, so `render` applies all of them.
KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "images", "configMapGenerator"}
# Variables only a secret may hold; the pods read them from the warden-secrets Secret.
SECRETS = {
    "SECRET_KEY",
    "WARDEN_AUDIT_KEY",
    "WARDEN_AUDIT_SIGNING_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_URL",
    "WARDEN_SLACK_WEBHOOK_URL",
    "WARDEN_METRICS_TOKEN",
}
REQUIRED_SECRETS = {
    "SECRET_KEY",
    "WARDEN_AUDIT_KEY",
    "WARDEN_AUDIT_SIGNING_KEY",
    "DATABASE_URL",
    "REDIS_URL",
}
# Variables other programs in the image read: name -> (module, what for).
OTHER_PROGRAMS = {"XDG_RUNTIME_DIR": (gunicorn.config, "gunicorn's control socket")}
NEEDS_PDB = {"web", "live", "front"}


# -- rendering --------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def render(directory: Path) -> list[dict]:
    """What `kubectl kustomize DIRECTORY` gives, less the hash kustomize appends to a
    generated ConfigMap's name (and to the references to it)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZE_KEYS
    assert not unknown, f"{directory}: render() does not apply {sorted(unknown)}"
    documents: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        documents += render(path) if path.is_dir() else load_documents(path)
    for generator in kustomization.get("configMapGenerator", []):
        labels = generator.get("options", {}).get("labels", {})
        data = {Path(name).name: (directory / name).read_text() for name in generator["files"]}
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "labels": labels},
                "data": data,
            }
        )
    for image in kustomization.get("images", []):
        for container in all_containers(documents):
            if container["image"] == image["name"]:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    return documents


def pod_spec(document: dict) -> dict | None:
    if document["kind"] in ("Deployment", "Job"):
        return document["spec"]["template"]["spec"]
    return None


def all_containers(documents: list[dict]) -> list[dict]:
    return [
        container
        for document in documents
        if (spec := pod_spec(document))
        for container in spec.get("containers", []) + spec.get("initContainers", [])
    ]


APPLIED = render(KUBERNETES)
JOB_DOCUMENTS = render(MIGRATE)
SECRET_DOCUMENTS = load_documents(SECRET_EXAMPLE)
# (migrate/ applies warden-config too: validated once)
EVERY_DOCUMENT = APPLIED + [d for d in JOB_DOCUMENTS if d not in APPLIED] + SECRET_DOCUMENTS


def of_kind(kind: str, documents: list[dict] = APPLIED) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
SERVICES = of_kind("Service")
[JOB] = of_kind("Job", JOB_DOCUMENTS).values()
CONFIG = of_kind("ConfigMap")["warden-config"]["data"]
SECRET_KEYS = {
    name: set(secret["stringData"]) for name, secret in of_kind("Secret", SECRET_DOCUMENTS).items()
}


def component(document: dict) -> str:
    return document["metadata"]["labels"]["app.kubernetes.io/component"]


def by_component() -> dict[str, dict]:
    return {component(deployment): deployment for deployment in DEPLOYMENTS.values()}


def warden_containers() -> list[dict]:
    """The containers that run Warden's image: web, live, worker and the migrations."""
    return [c for c in all_containers(APPLIED + JOB_DOCUMENTS) if c["name"] != "nginx"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def deployments_selected(selector: dict) -> list[str]:
    return [
        name
        for name, deployment in DEPLOYMENTS.items()
        if selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
    ]


# -- what the repository says ---------------------------------------------------------------


def variables_settings_read() -> set[str]:
    """Every NAME in config/settings.py's env.str("NAME"), _http_url("NAME", ...) and the like."""
    tree = ast.parse(SETTINGS.read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and re.fullmatch(r"[A-Z][A-Z0-9_]+", node.args[0].value)
    }


def entrypoint_roles() -> dict[str, str]:
    """role -> the lines deploy/entrypoint.sh runs for it."""
    text = ENTRYPOINT.read_text()
    arms = re.findall(r"^  (\w+)\)\n(.*?);;", text, flags=re.MULTILINE | re.DOTALL)
    return dict(arms)


def entrypoint_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+)", ENTRYPOINT.read_text()))


def nginx_routes() -> dict[str, str]:
    """location -> the upstream's ${VARIABLE} in deploy/nginx/warden.conf.template."""
    text = NGINX_TEMPLATE.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server \$\{(\w+)\};", text))
    locations = re.findall(
        r"^\s*location ([^{\n]+?) \{[^}]*?proxy_pass http://(\w+);", text, flags=re.MULTILINE
    )
    return {location.strip(): upstreams[upstream] for location, upstream in locations}


# -- the schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    EVERY_DOCUMENT,
    ids=[f"{d['kind']}/{d['metadata']['name']}" for d in EVERY_DOCUMENT],
)
def test_every_object_is_valid_kubernetes(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validation_refuses_a_broken_object():
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENTS["warden-web"]))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")  # a misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENTS["warden-web"]))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
@pytest.mark.parametrize("directory", [KUBERNETES, MIGRATE], ids=["kubernetes", "migrate"])
def test_kustomize_renders_what_the_test_reads(directory):
    """kubectl's kustomize (its default load restrictions) gives the same objects and images."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    theirs = [document for document in yaml.safe_load_all(rendered) if document]

    def unhashed(document: dict) -> tuple[str, str]:
        name = document["metadata"]["name"]
        if document["kind"] == "ConfigMap":
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        return document["kind"], name

    ours = render(directory)
    assert sorted(map(unhashed, theirs)) == sorted(map(unhashed, ours))

    def images(documents: list[dict]) -> list[str]:
        return sorted(container["image"] for container in all_containers(documents))

    assert images(theirs) == images(ours)
    [nginx] = [d for d in theirs if unhashed(d) == ("ConfigMap", "warden-nginx")] or [None]
    if nginx is not None:
        assert nginx["data"]["warden.conf.template"] == NGINX_TEMPLATE.read_text()


# -- the arrangement ----------------------------------------------------------------------------


def test_the_three_roles_and_the_front_each_have_a_deployment():
    assert set(by_component()) == {"web", "live", "worker", "front"}


def test_warden_containers_run_the_entrypoints_roles_from_one_image():
    roles = entrypoint_roles()
    images = {container["image"] for container in warden_containers()}
    assert len(images) == 1, f"web, live, worker and the migrations Job differ: {images}"
    for role in ("web", "live", "worker"):
        [container] = by_component()[role]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [role], f"{role} runs {container['args']}"
        assert role in roles
        assert "command" not in container, "the image's ENTRYPOINT picks the role"
        default_port = re.search(r"PORT:-(\d+)", roles[role])
        ports = [port["containerPort"] for port in container.get("ports", [])]
        assert ports == ([int(default_port.group(1))] if default_port else [])
    # everything else the entrypoint runs as given: the migrations
    [migrate] = JOB["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["python", "manage.py", "migrate", "--noinput"]
    assert re.search(r'^  \*\)\n\s+exec "\$@"', ENTRYPOINT.read_text(), flags=re.MULTILINE)


def test_the_migrations_job_connects_as_the_schemas_owner():
    [container] = JOB["spec"]["template"]["spec"]["containers"]
    [database_url] = [
        variable for variable in container["env"] if variable["name"] == "DATABASE_URL"
    ]
    reference = database_url["valueFrom"]["secretKeyRef"]
    assert reference["key"] in SECRET_KEYS[reference["name"]]
    assert reference["name"] != "warden-secrets", "the pods' own role owns nothing"
    assert JOB["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_migrations_job_needs_only_the_secrets_beforehand():
    """It runs first, on a fresh namespace too: migrate/ brings every object it uses but the
    Secrets, and the same settings as the pods'."""
    spec = JOB["spec"]["template"]["spec"]
    config_maps = of_kind("ConfigMap", JOB_DOCUMENTS)
    assert config_maps["warden-config"] == of_kind("ConfigMap")["warden-config"]
    for container in spec["containers"]:
        for source in container["envFrom"]:
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps
            else:
                assert source["secretRef"]["name"] in SECRET_KEYS
        for variable in container.get("env", []):
            if "valueFrom" in variable:
                assert variable["valueFrom"]["secretKeyRef"]["name"] in SECRET_KEYS
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} == {"emptyDir"}, f"{volume['name']} needs another object"


def test_the_worker_is_one_qcluster():
    worker = by_component()["worker"]
    assert worker["spec"]["replicas"] == 1
    targets = [
        a["spec"]["scaleTargetRef"]["name"] for a in of_kind("HorizontalPodAutoscaler").values()
    ]
    assert worker["metadata"]["name"] not in targets


# -- environment and secrets ---------------------------------------------------------------------


def environment_of(container: dict) -> set[str]:
    """The variables a container gets: its env, and the keys of what envFrom names."""
    names = {variable["name"] for variable in container.get("env", [])}
    configs = of_kind("ConfigMap")
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(configs[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            names |= SECRET_KEYS[source["secretRef"]["name"]]
    return names


def test_every_variable_the_pods_set_is_one_warden_reads():
    for name, (module, _) in OTHER_PROGRAMS.items():
        assert name in inspect.getsource(module)
    read = variables_settings_read() | entrypoint_variables() | set(OTHER_PROGRAMS)
    assert {"SECRET_KEY", "WARDEN_AUDIT_KEY", "ALLOWED_HOSTS"} <= read  # the parse works
    for container in warden_containers():
        unread = {
            name
            for name in environment_of(container) - read
            if not name.startswith(TARGET_ENV_PREFIX)  # hand-off targets' secrets
        }
        assert not unread, f"{container['name']} sets variables nothing reads: {sorted(unread)}"


def test_the_front_sets_exactly_the_templates_variables():
    [nginx] = by_component()["front"]["spec"]["template"]["spec"]["containers"]
    template_variables = set(re.findall(r"\$\{(\w+)\}", NGINX_TEMPLATE.read_text()))
    assert {variable["name"] for variable in nginx["env"]} == template_variables


def test_secrets_come_from_secret_objects_never_the_config_map():
    assert not (set(CONFIG) & SECRETS)
    assert not [name for name in CONFIG if name.startswith(TARGET_ENV_PREFIX)]
    assert SECRET_KEYS["warden-secrets"] >= REQUIRED_SECRETS
    assert set(SECRET_KEYS["warden-secrets"]) - SECRETS <= {
        name for name in SECRET_KEYS["warden-secrets"] if name.startswith(TARGET_ENV_PREFIX)
    }
    for container in warden_containers():
        assert {"configMapRef": {"name": "warden-config"}} in container["envFrom"]
        assert {"secretRef": {"name": "warden-secrets"}} in container["envFrom"]
        for variable in container.get("env", []):
            if variable["name"] in SECRETS:
                assert "secretKeyRef" in variable["valueFrom"], variable["name"]


def test_every_secret_warden_reads_is_a_key_of_the_secret():
    """A new key, token or credential-bearing URL in settings needs its place in the Secret."""
    secret_like = {
        name
        for name in variables_settings_read()
        if re.search(r"KEY|TOKEN|SECRET|PASSWORD", name)
        or (name.endswith("_URL") and not name.endswith("_BASE_URL"))  # base URLs are public
    }
    assert "WARDEN_AUDIT_KEY" in secret_like
    assert secret_like <= SECRETS, f"not kept as secrets: {sorted(secret_like - SECRETS)}"
    assert SECRET_KEYS["warden-secrets"] >= SECRETS


def test_the_secret_example_is_never_applied():
    for directory in (KUBERNETES, MIGRATE):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert SECRET_EXAMPLE.name not in kustomization["resources"]
    assert not of_kind("Secret")


def test_production_settings_accept_the_pods_environment(tmp_path):
    """The ConfigMap and the example Secret's values start Warden in production mode."""
    [secret] = [s for s in SECRET_DOCUMENTS if s["metadata"]["name"] == "warden-secrets"]
    environment = {
        "PATH": os.environ["PATH"],
        **CONFIG,
        **secret["stringData"],
        "WARDEN_DATA_DIR": str(tmp_path),  # /data exists in the pod
    }
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.PRODUCTION, settings.DATABASES['default']['ENGINE'], "
        "bool(settings.REDIS_URL))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["True", "config.postgresql", "True"]


# -- routing ------------------------------------------------------------------------------------


def service_for(upstream: str) -> tuple[dict, int]:
    """The Service an upstream `host:port` names, and the port."""
    host, port = upstream.split(":")
    return SERVICES[host], int(port)


def test_the_front_routes_long_polls_and_websockets_to_live_with_deploy_nginxs_file():
    front = by_component()["front"]["spec"]["template"]["spec"]
    [nginx] = front["containers"]
    [routes] = [volume for volume in front["volumes"] if "configMap" in volume]
    generated = of_kind("ConfigMap")[routes["configMap"]["name"]]
    # the very file compose mounts, not a copy
    assert generated["data"] == {"warden.conf.template": NGINX_TEMPLATE.read_text()}
    assert routes["configMap"]["items"] == [
        {"key": "warden.conf.template", "path": "default.conf.template"}
    ]
    [mount] = [m for m in nginx["volumeMounts"] if m["name"] == routes["name"]]
    assert mount["mountPath"] == "/etc/nginx/templates"

    environment = {variable["name"]: variable["value"] for variable in nginx["env"]}
    where = {}
    for location, variable in nginx_routes().items():
        service, port = service_for(environment[variable])
        assert port in [p["port"] for p in service["spec"]["ports"]]
        [deployment] = deployments_selected(service["spec"]["selector"])
        where[location] = component(DEPLOYMENTS[deployment])
    websocket_paths = {f"/{pattern.pattern}" for pattern in websocket_urlpatterns}
    assert all(p.startswith("/ws/") for p in websocket_paths)
    assert where == {f"= {LONG_POLL_PATH}": "live", "/ws/": "live", "/api/": "web", "/": "web"}
    listen = int(environment["LISTEN"])
    assert [p["containerPort"] for p in nginx["ports"]] == [listen]


def test_the_ingress_sends_everything_to_the_front():
    [ingress] = of_kind("Ingress").values()
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "warden-front", "port": {"name": "http"}}]
    assert "http" in [port["name"] for port in SERVICES["warden-front"]["spec"]["ports"]]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [
        host for host in CONFIG["ALLOWED_HOSTS"].split(",") if host != "localhost"
    ]


def test_every_service_selects_pods_and_a_named_port():
    for name, service in SERVICES.items():
        [deployment] = deployments_selected(service["spec"]["selector"])
        [container] = DEPLOYMENTS[deployment]["spec"]["template"]["spec"]["containers"]
        port_names = {port["name"] for port in container["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, name


# -- probes and resources -----------------------------------------------------------------------


def probes(container: dict) -> dict[str, dict]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {kind: container[kind] for kind in kinds if kind in container}


def test_every_deployment_has_requests_limits_and_probes():
    for name, deployment in DEPLOYMENTS.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            found = probes(container)
            assert {"startupProbe", "livenessProbe"} <= set(found), name
            if any(
                deployments_selected(s["spec"]["selector"]) == [name] for s in SERVICES.values()
            ):
                assert "readinessProbe" in found, f"{name} takes traffic unready"


def test_http_probes_ask_paths_warden_answers(client, settings):
    settings.ALLOWED_HOSTS = CONFIG["ALLOWED_HOSTS"].split(",")
    asked = 0
    for container in all_containers(APPLIED):
        for kind, probe in probes(container).items():
            if "httpGet" not in probe:
                continue
            path = probe["httpGet"]["path"]
            try:
                resolve(path)
            except Resolver404:
                pytest.fail(f"{container['name']} {kind} asks {path}, which config/urls.py lacks")
            headers = {h["name"]: h["value"] for h in probe["httpGet"].get("httpHeaders", [])}
            response = client.get(path, HTTP_HOST=headers["Host"])
            assert response.status_code == 200, f"{container['name']} {kind}: {response}"
            asked += 1
    assert asked >= 7  # web and live: three each; the front's readiness


def test_the_workers_probe_fails_without_a_running_cluster(tmp_path):
    """The probe's code runs (its imports exist) and says why it fails: no cluster here."""
    [worker] = by_component()["worker"]["spec"]["template"]["spec"]["containers"]
    command = worker["livenessProbe"]["exec"]["command"]
    assert command == worker["startupProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    environment = {"PATH": os.environ["PATH"], "WARDEN_DATA_DIR": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 1, finished.stderr
    assert "no running qcluster on" in finished.stderr


def test_pods_run_as_a_user_on_a_read_only_root():
    for document in APPLIED + JOB_DOCUMENTS:
        if not (spec := pod_spec(document)):
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        mounts_needed = {volume["name"] for volume in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, document["metadata"]["name"]
            assert context["allowPrivilegeEscalation"] is False
            mounted = {mount["name"] for mount in container["volumeMounts"]}
            assert mounted <= mounts_needed
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp, f"{container['name']} has no writable /tmp"
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert set(claims) <= set(of_kind("PersistentVolumeClaim"))


# -- scaling and disruptions ---------------------------------------------------------------------


def test_the_autoscaler_scales_web_only():
    [autoscaler] = of_kind("HorizontalPodAutoscaler").values()
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "warden-web")
    assert component(DEPLOYMENTS[target["name"]]) == "web"
    assert "replicas" not in DEPLOYMENTS["warden-web"]["spec"], "the autoscaler owns the count"
    assert autoscaler["spec"]["minReplicas"] >= 2


def test_disruption_budgets_select_pods_and_leave_room_to_drain():
    autoscaler_min = {
        a["spec"]["scaleTargetRef"]["name"]: a["spec"]["minReplicas"]
        for a in of_kind("HorizontalPodAutoscaler").values()
    }
    covered = set()
    for name, budget in of_kind("PodDisruptionBudget").items():
        [deployment] = deployments_selected(budget["spec"]["selector"]["matchLabels"])
        replicas = DEPLOYMENTS[deployment]["spec"].get("replicas") or autoscaler_min[deployment]
        assert budget["spec"]["minAvailable"] < replicas, f"{name} blocks every drain"
        covered.add(component(DEPLOYMENTS[deployment]))
    assert covered >= NEEDS_PDB
