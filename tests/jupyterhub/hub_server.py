"""Runs a real, throw-away JupyterHub on 127.0.0.1 for roster-sync's hub tests.

Usage: python hub_server.py [--page-limit N] [--values VALUES.yaml]
       (python of the venv made by .ci/hub-venv.sh)

Starts `jupyterhub` in a fresh temporary directory (sqlite database, cookie secret, pid
file, log) with a no-op proxy (no configurable-http-proxy needed), the null authenticator
(nobody can log in; users are made through the API) and four services with API tokens:

- `test-admin`: everything the tests need to set the hub up and inspect it;
- `roster-sync`: exactly the scopes SPEC §9 lists for roster-sync, nothing more;
- `read-only`: the read scopes only (writes are refused with 403);
- `names-only`: may list groups but not read their members.

With `--values`, the hub spawns with a KubeSpawner configured as z2jh does (dict-form home
volume and mount) plus `hub/roster_profiles.py`'s `group_overrides` for the values file's
`custom.profiles`. The spawner stops where KubeSpawner would submit the pod to Kubernetes
(no cluster is contacted; a dummy kubeconfig satisfies the client) and writes what the pod
would get to `{manifests}/{username}.json`: the user's groups, memory limit and guarantee,
and mount paths.

Once the hub's REST API answers (and has loaded the tokens), prints ONE JSON line on stdout:
{"api": "http://127.0.0.1:PORT/hub/api", "admin_token": ..., "sync_token": ...,
 "read_only_token": ..., "names_only_token": ..., "page_limit": N, "pid": ..., "log": ...,
 "manifests": DIR or null}
It then waits until its stdin closes (the test process ended, however it ended) or it gets
SIGTERM/SIGINT, stops the hub and removes the directory. The hub itself also gets SIGTERM
if this launcher dies (PR_SET_PDEATHSIG), so no hub outlives its tests.
If the hub cannot start, prints the end of its log on stderr and exits 1.
"""

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# The scopes SPEC §9 says roster-sync's token needs.
ROSTER_SYNC_SCOPES = [
    "list:users",
    "read:users:name",
    "read:groups",
    "list:groups",
    "groups",
    "admin:groups",
]

CONFIG = r'''
from jupyterhub.proxy import Proxy


class NoopProxy(Proxy):
    """A proxy that routes nothing: the tests talk to the hub's API port directly."""

    should_start = False

    async def add_route(self, routespec, target, data):
        pass

    async def delete_route(self, routespec):
        pass

    async def get_all_routes(self):
        return {}


c = get_config()  # noqa
settings = __SETTINGS__
c.JupyterHub.proxy_class = NoopProxy
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = settings["public_port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings["hub_port"]
c.JupyterHub.db_url = "sqlite:///" + settings["dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["dir"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = settings["dir"] + "/jupyterhub.pid"
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.cleanup_servers = False
c.JupyterHub.api_page_default_limit = settings["page_limit"]
c.JupyterHub.api_page_max_limit = settings["page_limit"]
c.JupyterHub.log_level = "INFO"
c.JupyterHub.services = [
    {"name": name, "api_token": token} for name, token in settings["tokens"].items()
]
c.JupyterHub.load_roles = [
    {"name": name, "scopes": settings["scopes"][name], "services": [name]}
    for name in settings["tokens"]
]

if settings["profiles"] is not None:
    import json
    import os
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from jupyterhub.utils import maybe_future
    from kubernetes_asyncio.config import kube_config

    # KubeSpawner loads a kubeconfig when it is made: a dummy one, never contacted.
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = settings["kubeconfig"]
    from kubespawner import KubeSpawner

    sys.path.insert(0, settings["hub_module_dir"])
    import roster_profiles

    class Up(BaseHTTPRequestHandler):
        """Stands for the single-user server, so the hub sees the spawn succeed."""

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"up")

        def log_message(self, *args):
            pass

    up = ThreadingHTTPServer(("127.0.0.1", 0), Up)
    threading.Thread(target=up.serve_forever, daemon=True).start()

    class ManifestSpawner(KubeSpawner):
        """KubeSpawner up to the pod it would submit; records what the tests check."""

        async def start(self):
            # the steps of KubeSpawner._start before its first Kubernetes request
            await self.load_user_options()
            pod = await self.get_pod_manifest()
            if self.modify_pod_hook:
                pod = await maybe_future(self.modify_pod_hook(self, pod))
            container = pod.spec.containers[0]
            record = {
                "groups": sorted(group.name for group in self.user.groups),
                "mem_limit": (container.resources.limits or {}).get("memory"),
                "mem_guarantee": (container.resources.requests or {}).get("memory"),
                "mounts": sorted(mount.mount_path for mount in container.volume_mounts or []),
                "volumes": sorted(volume.name for volume in pod.spec.volumes or []),
            }
            path = os.path.join(settings["manifests"], self.user.name + ".json")
            with open(path + ".tmp", "w") as file:
                json.dump(record, file)
            os.replace(path + ".tmp", path)
            self._running = True
            return "http://127.0.0.1:%d" % up.server_address[1]

        async def poll(self):
            return None if getattr(self, "_running", False) else 0

        async def stop(self, now=False):
            self._running = False

    c.JupyterHub.spawner_class = ManifestSpawner
    # z2jh's forms (singleuser.storage.type=static): dicts, a home volume named "home"
    c.KubeSpawner.volumes = {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}}
    c.KubeSpawner.volume_mounts = {"home": {"mountPath": "/home/jovyan", "name": "home", "subPath": "{username}"}}
    c.KubeSpawner.mem_limit = "1G"
    c.KubeSpawner.mem_guarantee = "512M"
    roster_profiles.RosterProfiles(settings["profiles"]).install_group_overrides(c)
'''

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_parent_death_signal():
    """In the hub's process: get SIGTERM when the launcher dies (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def api_ready(api, token, deadline, hub):
    """Waits until the API answers an authenticated request; False if the hub died."""
    request = urllib.request.Request(
        api + "/users", headers={"Authorization": "token " + token}
    )
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def stop(hub):
    if hub.poll() is None:
        hub.terminate()
        try:
            hub.wait(10)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--page-limit", type=int, default=200)
    parser.add_argument("--startup-timeout", type=float, default=90)
    parser.add_argument("--values", help="helm values whose custom.profiles the spawner applies")
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="roster-sync-hub-")
    tokens = {
        "test-admin": secrets.token_hex(24),
        "roster-sync": secrets.token_hex(24),
        "read-only": secrets.token_hex(24),
        "names-only": secrets.token_hex(24),
    }
    profiles = None
    manifests = None
    if args.values:
        import yaml

        with open(args.values) as file:
            profiles = (yaml.safe_load(file).get("custom") or {}).get("profiles") or {}
        manifests = os.path.join(directory, "manifests")
        os.mkdir(manifests)
        with open(os.path.join(directory, "kubeconfig"), "w") as file:
            file.write(KUBECONFIG)
    scopes = {
        "test-admin": ["admin:users", "admin:groups", "admin:servers", "list:users", "read:users"],
        "roster-sync": ROSTER_SYNC_SCOPES,
        "read-only": ["list:users", "read:users:name", "read:groups", "list:groups"],
        "names-only": ["list:users", "read:users:name", "list:groups"],
    }
    hub = None
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for _attempt in range(3):  # a free port can be taken between the probe and the bind
            settings = {
                "dir": directory,
                "hub_port": free_port(),
                "public_port": free_port(),
                "page_limit": args.page_limit,
                "tokens": tokens,
                "scopes": scopes,
                "profiles": profiles,
                "manifests": manifests,
                "kubeconfig": os.path.join(directory, "kubeconfig"),
                "hub_module_dir": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "hub"),
            }
            config = os.path.join(directory, "jupyterhub_config.py")
            with open(config, "w") as file:
                file.write(CONFIG.replace("__SETTINGS__", repr(settings)))
            log_path = os.path.join(directory, "jupyterhub.log")
            log = open(log_path, "ab")
            hub = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", config],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=set_parent_death_signal,
            )
            log.close()
            api = "http://127.0.0.1:%d/hub/api" % settings["hub_port"]
            deadline = time.monotonic() + args.startup_timeout
            if api_ready(api, tokens["test-admin"], deadline, hub):
                break
            stop(hub)
            hub = None
        if hub is None:
            with open(log_path, "rb") as file:
                tail = file.read()[-6000:].decode("utf-8", "replace")
            print("jupyterhub did not start; end of its log:\n" + tail, file=sys.stderr)
            return 1
        print(
            json.dumps(
                {
                    "api": api,
                    "admin_token": tokens["test-admin"],
                    "sync_token": tokens["roster-sync"],
                    "read_only_token": tokens["read-only"],
                    "names_only_token": tokens["names-only"],
                    "sync_scopes": ROSTER_SYNC_SCOPES,
                    "page_limit": args.page_limit,
                    "pid": hub.pid,
                    "log": log_path,
                    "manifests": manifests,
                }
            ),
            flush=True,
        )

        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            stopping.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        while not stopping.wait(0.2):
            if hub.poll() is not None:
                print("jupyterhub exited unexpectedly", file=sys.stderr)
                return 1
        return 0
    finally:
        if hub is not None:
            stop(hub)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
