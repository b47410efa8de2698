"""A real kube-apiserver + etcd on loopback, for tests, benchmarks and the demo.

The envtest idea from controller-runtime, in Python: etcd and kube-apiserver run as child
processes in a temporary directory, with a private CA, token and client-certificate
authentication, RBAC authorization and a JSON audit log. Identities are minted at any time:
users (client certificates with groups) and ServiceAccounts (TokenRequest).

``USE_EXISTING_CLUSTER=1`` with ``KUBECONFIG`` gives the same interface on a real cluster, minus
the audit log and user certificates (only ServiceAccount identities can be minted there).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS_SCRIPT = REPO_ROOT / "hack" / "envtest-assets.sh"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class AssetsError(RuntimeError):
    """etcd or kube-apiserver could not be produced or started."""


def ensure_assets() -> Path:
    """Run hack/envtest-assets.sh (instant when cached) and return the bin directory."""
    proc = subprocess.run(["bash", str(ASSETS_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssetsError(
            f"{ASSETS_SCRIPT} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


_ISSUED: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so two ports asked for one process (metrics and health) could collide.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _ISSUED:
            _ISSUED.add(port)
            return port


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssetsError(f"openssl {' '.join(args)} failed: {proc.stderr}")


@dataclass
class Identity:
    """Credentials of one user or ServiceAccount, and a kubeconfig file for them."""

    username: str
    groups: tuple[str, ...]
    kubeconfig: Path


@dataclass
class Cluster:
    """What tests get: a kubeconfig, admin credentials and identity minting."""

    server: str
    admin: Identity
    workdir: Path
    ca_data: str | None = None
    audit_log: Path | None = None
    _ca_dir: Path | None = None
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # How each of _processes was started (argv, log), so a fault test can stop one and start
    # it again on the same ports, data dir and certificates.
    _commands: list[tuple[list[str], Path]] = field(default_factory=list)
    _etcd_url: str | None = None

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig."""
        return self.admin.kubeconfig

    @property
    def is_local(self) -> bool:
        """True for the harness's own API server, False for USE_EXISTING_CLUSTER."""
        return self._ca_dir is not None

    def api_client(self, identity: Identity | None = None) -> Any:
        """A kubernetes.client.ApiClient for ``identity`` (admin by default)."""
        from kubernetes import config as kube_config

        return kube_config.new_client_from_config(str((identity or self.admin).kubeconfig))

    def mint_user(self, username: str, groups: Sequence[str] = ()) -> Identity:
        """A user authenticated by a client certificate (CN=user, O=each group)."""
        if self._ca_dir is None:
            raise AssetsError("minting users needs the local API server (not USE_EXISTING_CLUSTER)")
        subject = "/CN=" + username + "".join(f"/O={g}" for g in groups)
        stem = "user-" + secrets.token_hex(4)
        d = self._ca_dir
        _issue_certificate(d, stem, subject)
        user: dict[str, Any] = {
            "client-certificate-data": _b64((d / f"{stem}.crt").read_bytes()),
            "client-key-data": _b64((d / f"{stem}.key").read_bytes()),
        }
        path = self.workdir / f"kubeconfig-{stem}"
        _write_kubeconfig(path, self.server, self.ca_data, username, user)
        return Identity(username, tuple(groups), path)

    def mint_service_account(
        self, namespace: str, name: str, expiration_seconds: int = 86_400
    ) -> Identity:
        """A ServiceAccount (created if missing) with a token from the TokenRequest API."""
        from kubernetes import client

        api = client.CoreV1Api(self.api_client())
        with contextlib.suppress(client.ApiException):
            api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        with contextlib.suppress(client.ApiException):
            api.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        token = api.create_namespaced_service_account_token(name, namespace, request).status.token
        username = f"system:serviceaccount:{namespace}:{name}"
        path = self.workdir / f"kubeconfig-sa-{namespace}-{name}"
        _write_kubeconfig(path, self.server, self.ca_data, username, {"token": token})
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        return Identity(username, groups, path)

    def component_pids(self) -> dict[str, int]:
        """The local control plane's process ids, by name ("etcd", "kube-apiserver"); empty
        for an existing cluster (its processes are not ours to look at)."""
        if not self.is_local or len(self._processes) != 2:
            return {}
        return {"etcd": self._processes[0].pid, "kube-apiserver": self._processes[1].pid}

    def audit_events(
        self,
        username: str | None = None,
        verbs: frozenset[str] | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Audit events (ResponseComplete stage), filtered by user, verb and start time."""
        if self.audit_log is None:
            raise AssetsError("the audit log exists only on the local API server")
        events = []
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete":
                continue
            if username is not None and event["user"].get("username") != username:
                continue
            if verbs is not None and event.get("verb") not in verbs:
                continue
            if since is not None and audit_time(event) < since:
                continue
            events.append(event)
        return events

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd; escalate to SIGKILL after 10 s."""
        for proc in reversed(self._processes):
            _terminate(proc)
        self._processes.clear()
        self._commands.clear()

    # --- faults: stop and start the control plane under a running operator ------------------

    def _component(self, index: int) -> subprocess.Popen[bytes]:
        if not self.is_local or len(self._commands) != 2:
            raise AssetsError("control-plane faults need the local API server")
        return self._processes[index]

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL with ``kill``); etcd keeps running."""
        _terminate(self._component(1), kill=kill)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Start kube-apiserver again with the same port, certificates and etcd; wait for
        /readyz."""
        self._restart(1)
        self.wait_ready(timeout)

    def stop_etcd(self, *, kill: bool = False) -> None:
        """Stop etcd under a running kube-apiserver (which keeps answering, with errors)."""
        _terminate(self._component(0), kill=kill)

    def start_etcd(self) -> None:
        """Start etcd again on the same ports and data dir (the API server reconnects)."""
        self._restart(0)

    def _restart(self, index: int) -> None:
        if self._component(index).poll() is None:
            raise AssetsError(f"{self._commands[index][1].stem} is still running")
        argv, log = self._commands[index]
        # The port was ours a moment ago; a socket in TIME_WAIT may hold it for a moment.
        self._processes[index] = _spawn(argv, log)

    def ensure_running(self) -> None:
        """Start again whatever a fault test stopped (etcd first), and wait for /readyz."""
        if self._component(0).poll() is not None:
            self.start_etcd()
        if self._component(1).poll() is not None:
            self._restart(1)
        self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until kube-apiserver answers /readyz with 200 (etcd reachable)."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        assert self._ca_dir is not None
        logs = [log for _, log in self._commands]
        _wait_ready(
            self.server,
            config["users"][0]["user"]["token"],
            self._ca_dir / "ca.crt",
            self._processes,
            logs,
            timeout,
        )

    def etcd_compact(self) -> int:
        """Move etcd's revision past every resourceVersion handed out so far, then compact at it:
        every watch resumed from an earlier resourceVersion gets 410 Gone. Returns the revision
        compacted at."""
        if self._etcd_url is None:
            raise AssetsError("etcd compaction needs the local API server")
        # Without the extra write, a watch whose resourceVersion is etcd's last write (a status
        # written a moment before the API server stopped) would still be valid after the
        # compaction, and resume without the 410 the caller is testing. The key is outside the
        # API server's /registry prefix, so it never shows as an object.
        # etcd's JSON gateway (gRPC-gateway, v3 API): keys and values are base64.
        bump = {"key": _b64(b"/modelroute-tests/revision-bump"), "value": _b64(b"x")}
        revision = int(_etcd_call(self._etcd_url, "/v3/kv/put", bump)["header"]["revision"])
        _etcd_call(self._etcd_url, "/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision


def audit_time(event: dict[str, Any], field: str = "requestReceivedTimestamp") -> float:
    """An audit event's timestamp ``field``, as time.time()."""
    from datetime import datetime

    stamp = event.get(field, "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _write_kubeconfig(
    path: Path, server: str, ca_data: str | None, username: str, user: dict[str, Any]
) -> None:
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": cluster}],
        "users": [{"name": username, "user": user}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": username}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _etcd_call(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _terminate(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _issue_certificate(d: Path, stem: str, subject: str, extfile: str | None = None) -> None:
    """A key and a certificate signed by the CA in ``d``: ``<stem>.key``, ``<stem>.crt``."""
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{stem}.key",
        "-out",
        f"{stem}.csr",
        "-subj",
        subject,
        cwd=d,
    )
    extra = ["-extfile", extfile] if extfile else []
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{stem}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{stem}.crt",
        "-days",
        "2",
        *extra,
        cwd=d,
    )


def _make_pki(d: Path) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=modelroute-envtest-ca",
        cwd=d,
    )
    (d / "serving.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _issue_certificate(d, "serving", "/CN=kube-apiserver", extfile="serving.ext")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")  # appended: a restarted component keeps its earlier log
    # A session of its own, so stop() can signal the whole process group.
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(
    server: str,
    token: str,
    ca_file: Path,
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
    timeout: float = 90.0,
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise AssetsError(
                    f"{log.stem} exited with {proc.returncode}:\n"
                    f"{log.read_text(errors='replace')[-4000:]}"
                )
        request = urllib.request.Request(
            server + "/readyz", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise AssetsError(
        f"kube-apiserver not ready after {timeout:.0f} s: {last_error}\n"
        f"{logs[-1].read_text(errors='replace')[-4000:]}"
    )


def start_local(bin_dir: Path, workdir: Path) -> Cluster:
    """Start etcd and kube-apiserver under ``workdir`` and wait until the API is ready."""
    pki = workdir / "pki"
    pki.mkdir(parents=True)
    _make_pki(pki)
    admin_token = secrets.token_hex(16)
    (workdir / "tokens.csv").write_text(
        f'{admin_token},envtest-admin,envtest-admin,"system:masters"\n'
    )
    (workdir / "audit-policy.yaml").write_text(yaml.safe_dump(_AUDIT_POLICY))
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd_log, api_log = workdir / "etcd.log", workdir / "kube-apiserver.log"
    etcd_argv = [
        str(bin_dir / "etcd"),
        "--data-dir",
        str(workdir / "etcd"),
        "--name",
        "envtest",
        "--listen-client-urls",
        etcd_url,
        "--advertise-client-urls",
        etcd_url,
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer_port}",
        "--initial-cluster",
        f"envtest=http://127.0.0.1:{peer_port}",
        "--log-level",
        "warn",
    ]
    etcd = _spawn(etcd_argv, etcd_log)
    server = f"https://127.0.0.1:{api_port}"
    cluster = Cluster(
        server=server,
        admin=Identity("envtest-admin", ("system:masters",), workdir / "kubeconfig"),
        workdir=workdir,
        ca_data=_b64((pki / "ca.crt").read_bytes()),
        audit_log=workdir / "audit.log",
        _ca_dir=pki,
        _processes=[etcd],
        _commands=[(etcd_argv, etcd_log)],
        _etcd_url=etcd_url,
    )
    api_argv = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        "--insecure-port=0",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        f"--cert-dir={workdir / 'certs'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--allow-privileged=true",
        f"--audit-policy-file={workdir / 'audit-policy.yaml'}",
        f"--audit-log-path={cluster.audit_log}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v=0",
    ]
    apiserver = _spawn(api_argv, api_log)
    cluster._processes.append(apiserver)
    cluster._commands.append((api_argv, api_log))
    try:
        _wait_ready(server, admin_token, pki / "ca.crt", [etcd, apiserver], [etcd_log, api_log])
    except BaseException:
        cluster.stop()
        raise
    _write_kubeconfig(
        cluster.admin.kubeconfig, server, cluster.ca_data, "envtest-admin", {"token": admin_token}
    )
    return cluster


def existing_cluster(workdir: Path) -> Cluster:
    """Wrap the cluster of ``$KUBECONFIG`` (USE_EXISTING_CLUSTER=1)."""
    path = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    kubeconfig = Path(path.split(os.pathsep)[0])
    if not kubeconfig.exists():
        raise AssetsError(f"USE_EXISTING_CLUSTER=1 but the kubeconfig {kubeconfig} does not exist")
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster_entry = next(
        c for c in config["clusters"] if c["name"] == context["context"]["cluster"]
    )
    local_copy = workdir / "kubeconfig"
    shutil.copy(kubeconfig, local_copy)
    return Cluster(
        server=cluster_entry["cluster"]["server"],
        workdir=workdir,
        admin=Identity(context["context"]["user"], (), local_copy),
        ca_data=cluster_entry["cluster"].get("certificate-authority-data"),
    )


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """The local API server (or the existing cluster), stopped and cleaned up on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="modelroute-envtest-"))
    cluster: Cluster | None = None
    try:
        if os.environ.get("USE_EXISTING_CLUSTER") == "1":
            cluster = existing_cluster(workdir)
        else:
            cluster = start_local(ensure_assets(), workdir)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if os.environ.get("MODELROUTE_KEEP_ENVTEST") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
