"""roster_profiles against the real JupyterHub and KubeSpawner (the pinned venv, see .ci/hub-tests.sh).

Each test builds a real JupyterHub application on an sqlite file (``JupyterHub.initialize``
runs the real role and admin start-up), real ORM users, and spawns through the real
``User.spawn``: group_overrides, apply_user_options, pre_spawn_hook, then ``start()``.
The spawner is a KubeSpawner whose ``start()`` runs what KubeSpawner's own start does
before it calls the Kubernetes API (profile_list overrides, ``get_pod_manifest()``,
``modify_pod_hook``) and keeps the pod, so the checks are on the manifest KubeSpawner
would submit. No cluster is needed; a dummy kubeconfig satisfies the client set-up and is
never contacted. The only listener is a local HTTP server on 127.0.0.1 that answers the
hub's "is the server up" request. All names are made up.
"""

import atexit
import logging
import os
import tempfile
import threading
import unittest

_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""

try:
    from jupyterhub import orm, scopes
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import DummyAuthenticator
    from jupyterhub.utils import maybe_future
    from kubernetes_asyncio.config import kube_config
    from kubespawner import KubeSpawner
    from tornado import httpserver, web
    from tornado.netutil import bind_sockets
    from traitlets.config import Config
except ImportError as e:  # .ci/hub-tests.sh refuses to run without them, so CI never skips this
    raise unittest.SkipTest("real JupyterHub/KubeSpawner not importable: {}".format(e))

import roster_profiles as rp

# KubeSpawner loads a kubeconfig when it is made; kubernetes_asyncio took the path from
# KUBECONFIG at its import, so point its default at the dummy file instead.
with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False) as _kubeconfig:
    _kubeconfig.write(_KUBECONFIG)
atexit.register(os.unlink, _kubeconfig.name)
kube_config.KUBE_CONFIG_DEFAULT_LOCATION = _kubeconfig.name

GI = 1024 ** 3
COURSE = "2030-fall-11111"
OTHER = "2030-fall-22222"
ADMIN_GROUP = rp.DEFAULT_ADMIN_GROUP


# z2jh's jupyterhub_config.py with singleuser.storage.type=static, pvcName home-nfs
Z2JH_STATIC_VOLUMES = {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}}
Z2JH_STATIC_MOUNTS = {"home": {"mountPath": "/home/jovyan", "name": "home", "subPath": "{username}"}}
# ... and with the chart's default, type=dynamic
Z2JH_DYNAMIC_VOLUMES = {
    "volume-{user_server}": {"name": "volume-{user_server}", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
}
Z2JH_DYNAMIC_MOUNTS = {
    "volume-{user_server}": {"mountPath": "/home/jovyan", "name": "volume-{user_server}", "subPath": None}
}

PROFILES = {
    COURSE: {
        "mem_limit": "2G",
        "mem_guarantee": "1G",
        "extraVolumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "extraVolumeMounts": [
            {"name": "home", "mountPath": "/home/jovyan/shared", "subPath": "_shared/c1", "readOnly": True},
            {"name": "datasets", "mountPath": "/srv/datasets", "readOnly": True},
        ],
    },
    OTHER: {
        "mem_limit": "3G",
        "extraVolumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "extraVolumeMounts": [{"name": "datasets", "mountPath": "/srv/datasets", "readOnly": True}],
    },
    "module-leads": {"users": ["lead0001"], "mem_limit": "8G"},
}


class PodOnlySpawner(KubeSpawner):
    """KubeSpawner that stops where the real one would submit the pod to the API server."""

    async def start(self):
        # the steps of KubeSpawner._start before its first Kubernetes request
        await self.load_user_options()
        pod = await self.get_pod_manifest()
        if self.modify_pod_hook:
            pod = await maybe_future(self.modify_pod_hook(self, pod))
        self.pod = pod
        self.running = True
        return "http://127.0.0.1:{}".format(self.config.PodOnlySpawner.up_port)

    async def poll(self):
        return None if getattr(self, "running", False) else 0

    async def stop(self, now=False):
        self.running = False


class _Up(web.RequestHandler):
    def get(self, *args):
        self.write("up")


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def ours(self):
        return [m for m in self.messages if m.startswith("roster-profiles: ")]


class HubTest(unittest.IsolatedAsyncioTestCase):
    """A roster directory, a fresh hub database, and helpers to start hubs and spawn."""

    async def asyncSetUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = os.path.join(self._tmp.name, "profiles.d")
        os.mkdir(self.dir)
        self.db_url = "sqlite:///" + os.path.join(self._tmp.name, "hub.sqlite")
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server = httpserver.HTTPServer(web.Application([(r"/(.*)", _Up)]))
        self._server.add_sockets(sockets)
        self.log = ListHandler()
        self._loggers = [logging.getLogger(n) for n in ("JupyterHub", "traitlets")]
        self._levels = [logger.level for logger in self._loggers]
        for logger in self._loggers:
            logger.addHandler(self.log)
            # Spawners made outside JupyterHub.launch_instance() log to "traitlets"
            logger.setLevel(logging.INFO)
        self.app = None
        self.write(COURSE, "students", "student0001@berkeley.edu", "student0002@berkeley.edu")
        self.write(COURSE, "instructors", "gsi0001@berkeley.edu")
        self.write(OTHER, "students", "gsi0001@berkeley.edu")
        self.write(OTHER, "instructors", "instructor0002@berkeley.edu", "student0001@berkeley.edu")

    async def asyncTearDown(self):
        await self.stop_hub()
        for logger, level in zip(self._loggers, self._levels):
            logger.removeHandler(self.log)
            logger.setLevel(level)
        self._server.stop()
        self._tmp.cleanup()

    def write(self, key, kind, *lines):
        path = os.path.join(self.dir, "{}-{}.txt".format(key, kind))
        with open(path + ".tmp", "w") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(path + ".tmp", path)  # as roster-sync does: a new inode, so the cache sees it

    def config(self, volumes=Z2JH_STATIC_VOLUMES, mounts=Z2JH_STATIC_MOUNTS):
        c = Config()
        c.JupyterHub.db_url = self.db_url
        c.JupyterHub.cookie_secret = b"x" * 32
        c.JupyterHub.pid_file = os.path.join(self._tmp.name, "hub.pid")
        c.JupyterHub.spawner_class = PodOnlySpawner
        c.JupyterHub.authenticator_class = DummyAuthenticator
        c.JupyterHub.log_level = logging.WARNING
        c.ConfigurableHTTPProxy.auth_token = "proxy-token"
        c.PodOnlySpawner.up_port = self.port
        c.KubeSpawner.volumes = volumes
        c.KubeSpawner.volume_mounts = mounts
        c.KubeSpawner.mem_limit = "1G"
        c.KubeSpawner.mem_guarantee = "512M"
        return c

    async def start_hub(self, c):
        """Stop the running hub, if any, and start one on the same database (a restart)."""
        await self.stop_hub()
        self.app = JupyterHub(config=c)
        await self.app.initialize([])
        return self.app

    async def stop_hub(self):
        if self.app is not None:
            self.app.db.close()
            self.app.session_factory.kw["bind"].dispose()
            self.app = None

    def user(self, name):
        orm_user = orm.User.find(self.app.db, name)
        if orm_user is None:
            orm_user = orm.User(name=name)
            self.app.db.add(orm_user)
            self.app.db.commit()
        return self.app.users[orm_user]

    async def spawn(self, name, options=None):
        """Spawn through JupyterHub and stop again; returns the pod KubeSpawner built."""
        user = self.user(name)
        await user.spawn(options=options)
        spawner = user.spawner
        pod = spawner.pod
        await user.stop()
        return pod

    def set_groups(self, name, *groups):
        self.user(name).sync_groups(list(groups))

    def scopes_of(self, name):
        return scopes.get_scopes_for(orm.User.find(self.app.db, name))

    def assert_valid_pod(self, pod):
        volumes = [v.name for v in pod.spec.volumes]
        self.assertEqual(len(volumes), len(set(volumes)), volumes)
        for container in pod.spec.containers:
            paths = [m.mount_path for m in container.volume_mounts]
            self.assertEqual(len(paths), len(set(paths)), paths)
            for mount in container.volume_mounts:
                self.assertIn(mount.name, volumes, "mount {} names no volume".format(mount.mount_path))
            memory = container.resources
            if memory.requests.get("memory") and memory.limits.get("memory"):
                self.assertLessEqual(
                    rp.parse_memory(memory.requests["memory"]), rp.parse_memory(memory.limits["memory"])
                )


def volume_names(pod):
    return sorted(v.name for v in pod.spec.volumes)


def mount_paths(pod):
    return sorted(m.mount_path for m in pod.spec.containers[0].volume_mounts)


def memory(pod):
    resources = pod.spec.containers[0].resources
    return rp.parse_memory(resources.limits.get("memory")), rp.parse_memory(resources.requests.get("memory"))


class HookPathTest(HubTest):
    def hook_config(self, profiles=PROFILES, **kw):
        c = self.config(**kw)
        rp.install(c, profiles, self.dir)
        return c

    async def test_course_member_gets_profile_and_keeps_home(self):
        await self.start_hub(self.hook_config())
        pod = await self.spawn("student0001")
        self.assert_valid_pod(pod)
        self.assertEqual(volume_names(pod), ["datasets", "home"])
        self.assertEqual(mount_paths(pod), ["/home/jovyan", "/home/jovyan/shared", "/srv/datasets"])
        self.assertEqual(memory(pod), (3 * GI, 1 * GI))  # max of course 2G, other course 3G
        pod = await self.spawn("outsider0001")
        self.assertEqual(volume_names(pod), ["home"])
        self.assertEqual(memory(pod), (1 * GI, 512 * 1024 ** 2))

    async def test_dict_form_profile_list_override_keeps_home(self):
        c = self.hook_config()
        c.KubeSpawner.profile_list = [
            {
                "display_name": "scratch",
                "slug": "scratch",
                "default": True,
                "kubespawner_override": {
                    "volumes": {"scratch": {"name": "scratch", "emptyDir": {}}},
                    "volume_mounts": {"scratch": {"name": "scratch", "mountPath": "/scratch"}},
                },
            }
        ]
        await self.start_hub(c)
        for name in ("student0001", "outsider0001"):
            with self.subTest(name=name):
                pod = await self.spawn(name)
                self.assert_valid_pod(pod)
                self.assertIn("home", volume_names(pod))
                self.assertIn("scratch", volume_names(pod))
                self.assertIn("/home/jovyan", mount_paths(pod))
        self.assertIn("datasets", volume_names(await self.spawn("student0001")))

    async def test_profile_list_lower_limit_never_below_guarantee(self):
        c = self.hook_config({COURSE: {"mem_guarantee": "4G"}})
        c.KubeSpawner.profile_list = [
            {"display_name": "small", "slug": "small", "default": True, "kubespawner_override": {"mem_limit": "2G"}}
        ]
        await self.start_hub(c)
        pod = await self.spawn("student0001")
        self.assert_valid_pod(pod)
        self.assertEqual(memory(pod), (2 * GI, 2 * GI))
        self.assertTrue(any("lowered the request" in m for m in self.log.ours()))

    async def test_dynamic_storage_mount_must_name_the_dynamic_volume(self):
        profiles = {
            COURSE: {
                "extraVolumeMounts": [
                    {"name": "home", "mountPath": "/home/jovyan/wrong", "subPath": "_shared"},
                    {"name": "volume-{user_server}", "mountPath": "/home/jovyan/shared", "subPath": "_shared"},
                ]
            }
        }
        await self.start_hub(self.hook_config(profiles, volumes=Z2JH_DYNAMIC_VOLUMES, mounts=Z2JH_DYNAMIC_MOUNTS))
        pod = await self.spawn("student0001")
        self.assert_valid_pod(pod)
        self.assertEqual(volume_names(pod), ["volume-student0001"])
        self.assertEqual(mount_paths(pod), ["/home/jovyan", "/home/jovyan/shared"])
        self.assertTrue(any("no volume named 'home'" in m for m in self.log.ours()))

    async def test_each_spawn_starts_from_current_state(self):
        c = self.hook_config()
        c.KubeSpawner.group_overrides = {
            "bigmem": {"groups": ["bigmem"], "spawner_override": {"mem_limit": "8G"}},
        }
        c.KubeSpawner.apply_user_options = {"memory": "mem_limit"}
        await self.start_hub(c)
        self.assertEqual(memory(await self.spawn("student0002"))[0], 2 * GI)
        self.set_groups("student0002", "bigmem")  # group_overrides set after the first spawn show up
        self.assertEqual(memory(await self.spawn("student0002"))[0], 8 * GI)
        self.set_groups("student0002")
        self.assertEqual(memory(await self.spawn("student0002", {"memory": "6G"}))[0], 6 * GI)
        self.write(COURSE, "students", "student0001@berkeley.edu")  # student0002 leaves the course
        pod = await self.spawn("student0002", {})
        self.assertEqual(volume_names(pod), ["home"])
        self.assertEqual(memory(pod)[0], 1 * GI)

    async def test_reused_spawner_object_neither_compounds_nor_freezes(self):
        # JupyterHub 5 makes a new Spawner after a stop, but an object can still see more
        # than one spawn sequence; run JupyterHub's own steps twice on one object.
        await self.start_hub(self.hook_config())
        spawner = self.user("gsi0001").spawner
        await spawner.apply_group_overrides()
        await spawner.run_pre_spawn_hook()
        first = (dict(spawner.volumes), dict(spawner.volume_mounts), spawner.mem_limit)
        spawner.mem_guarantee = 2 * GI  # set since by someone else: must stay
        await spawner.apply_group_overrides()
        await spawner.run_pre_spawn_hook()
        self.assertEqual((spawner.volumes, spawner.volume_mounts, spawner.mem_limit), first)
        self.assertEqual(spawner.mem_guarantee, 2 * GI)
        self.write(COURSE, "instructors")
        self.write(OTHER, "students")
        await spawner.run_pre_spawn_hook()
        self.assertEqual(spawner.volumes, Z2JH_STATIC_VOLUMES)
        self.assertEqual(spawner.volume_mounts, Z2JH_STATIC_MOUNTS)
        self.assertEqual(spawner.mem_limit, 1 * GI)

    async def test_missing_roster_directory_warns_once(self):
        c = self.config()
        rp.install(c, PROFILES, os.path.join(self._tmp.name, "profiles.d-typo"))
        await self.start_hub(c)
        await self.spawn("student0001")
        await self.spawn("student0002")
        missing = [m for m in self.log.ours() if "does not exist" in m]
        self.assertEqual(len(missing), 1)

    async def test_roster_files_are_read_off_the_event_loop(self):
        threads = set()
        original = rp.Rosters.members

        def members(rosters, *args):
            threads.add(threading.current_thread())
            return original(rosters, *args)

        rp.Rosters.members = members
        try:
            await self.start_hub(self.hook_config())
            await self.spawn("student0001")
        finally:
            rp.Rosters.members = original
        self.assertTrue(threads)
        self.assertNotIn(threading.main_thread(), threads)

    async def test_configured_hooks_still_run(self):
        calls = []
        c = self.config()
        c.Spawner.pre_spawn_hook = lambda spawner: calls.append("pre_spawn")

        def modify(spawner, pod):
            calls.append("modify_pod")
            return pod

        c.KubeSpawner.modify_pod_hook = modify
        rp.install(c, PROFILES, self.dir)
        await self.start_hub(c)
        self.assertIn("datasets", volume_names(await self.spawn("student0001")))
        self.assertEqual(calls, ["pre_spawn", "modify_pod"])

    async def test_no_log_line_names_a_user(self):
        await self.start_hub(self.hook_config())
        await self.spawn("student0001")
        await self.spawn("gsi0001")
        self.assertTrue(self.log.ours())
        for message in self.log.ours():
            self.assertNotIn("student0001", message)
            self.assertNotIn("gsi0001", message)


class AdminTest(HubTest):
    def admin_config(self, profiles=PROFILES, admin_role=None, admin_users=()):
        c = self.config()
        if admin_role is not None:
            c.JupyterHub.load_roles = [dict(admin_role, name="admin")]
            if ADMIN_GROUP in admin_role.get("groups", ()):
                c.JupyterHub.load_groups = {ADMIN_GROUP: {}}  # see the next test
        if admin_users:
            c.Authenticator.admin_users = set(admin_users)
        rp.install(c, profiles, self.dir)
        return c

    def assert_admin(self, name, expected):
        self.assertIs("admin-ui" in self.scopes_of(name), expected, name)

    async def test_admin_via_group_with_load_roles_survives_restarts(self):
        # JupyterHub's recommended form: the admin role's members declared in load_roles.
        # student0001 is a student (demoted by the old hook) and a configured admin.
        role = {"users": ["boss", "student0001"], "groups": [ADMIN_GROUP]}
        await self.start_hub(self.admin_config(admin_role=role))
        await self.spawn("instructor0002")
        await self.spawn("student0001")
        for restart in range(2):
            with self.subTest(restart=restart):
                await self.start_hub(self.admin_config(admin_role=role))
                self.assert_admin("instructor0002", True)
                self.assert_admin("student0001", True)
                self.assert_admin("boss", True)
                self.assertTrue(orm.User.find(self.app.db, "student0001").admin)
        self.assert_admin("gsi0001", False)  # instructor in one course, student in another
        await self.spawn("gsi0001")
        self.assert_admin("gsi0001", False)

    async def test_jupyterhub_needs_the_group_to_exist_before_the_admin_role_lists_it(self):
        # JupyterHub 5.5 stops at start-up on an admin role naming a group it has never
        # seen; the docs say to declare the group in load_groups for that reason.
        c = self.admin_config()
        c.JupyterHub.load_roles = [{"name": "admin", "users": ["boss"], "groups": [ADMIN_GROUP]}]
        with self.assertRaises(AttributeError):
            await self.start_hub(c)

    async def test_former_instructor_loses_admin(self):
        await self.start_hub(self.admin_config())
        await self.spawn("instructor0002")
        self.assert_admin("instructor0002", True)
        self.assertFalse(orm.User.find(self.app.db, "instructor0002").admin)  # the flag is never touched
        # the course leaves custom.profiles (a helm upgrade restarts the hub)
        await self.start_hub(self.admin_config({COURSE: PROFILES[COURSE]}))
        await self.spawn("instructor0002")
        self.assert_admin("instructor0002", False)

    async def test_admin_users_are_never_demoted(self):
        await self.start_hub(self.admin_config(admin_users={"student0001"}))
        await self.spawn("student0001")
        self.assert_admin("student0001", True)
        await self.start_hub(self.admin_config(admin_users={"student0001"}))
        self.assert_admin("student0001", True)

    async def test_load_roles_admin_without_the_group_warns_once_and_grants_nothing(self):
        await self.start_hub(self.admin_config(admin_role={"users": ["boss"]}))
        await self.spawn("instructor0002")
        await self.spawn("instructor0002")
        self.assert_admin("instructor0002", False)
        self.assertEqual(len([m for m in self.log.ours() if "does not list group" in m]), 1)

    async def test_admin_group_disabled(self):
        c = self.config()
        rp.install(c, PROFILES, self.dir, admin_group=None)
        await self.start_hub(c)
        await self.spawn("instructor0002")
        self.assert_admin("instructor0002", False)
        self.assertIsNone(orm.Group.find(self.app.db, ADMIN_GROUP))


class GroupOverridesTest(HubTest):
    async def test_synced_groups_select_the_profiles(self):
        c = self.config()
        rp.RosterProfiles(PROFILES, self.dir).install_group_overrides(c)
        await self.start_hub(c)
        self.set_groups("student0001", rp.group_name(COURSE, "students"), rp.group_name(OTHER, "instructors"))
        pod = await self.spawn("student0001")
        self.assert_valid_pod(pod)
        self.assertEqual(volume_names(pod), ["datasets", "home"])
        self.assertEqual(mount_paths(pod), ["/home/jovyan", "/home/jovyan/shared", "/srv/datasets"])
        self.assertEqual(memory(pod), (3 * GI, 1 * GI))
        pod = await self.spawn("student0001")  # again: nothing compounds
        self.assertEqual(mount_paths(pod), ["/home/jovyan", "/home/jovyan/shared", "/srv/datasets"])
        self.set_groups("student0001")
        pod = await self.spawn("student0001")
        self.assertEqual(volume_names(pod), ["home"])
        self.assertEqual(memory(pod), (1 * GI, 512 * 1024 ** 2))

    async def test_existing_group_overrides_are_kept(self):
        c = self.config()
        c.KubeSpawner.group_overrides = {"bigmem": {"groups": ["bigmem"], "spawner_override": {"mem_limit": "8G"}}}
        rp.RosterProfiles(PROFILES, self.dir).install_group_overrides(c)
        self.assertIn("bigmem", c.KubeSpawner.group_overrides)
        await self.start_hub(c)
        self.set_groups("student0002", "bigmem", rp.group_name(COURSE, "students"))
        self.assertEqual(memory(await self.spawn("student0002"))[0], 8 * GI)

    def test_users_profiles_have_no_group(self):
        overrides = rp.RosterProfiles(PROFILES, self.dir).group_overrides()
        groups = sorted(g for o in overrides.values() for g in o["groups"])
        self.assertEqual(
            groups,
            sorted("course::{}::{}".format(k, kind) for k in (COURSE, OTHER) for kind in ("students", "instructors")),
        )


class ManagedGroupsAuthenticator(DummyAuthenticator):
    async def authenticate(self, handler, data):
        return {"name": data["username"], "groups": ["staff"]}


class PostAuthHookTest(HubTest):
    async def login(self, name):
        """What JupyterHub's login handler does with the authenticator's answer."""
        authenticated = await self.app.authenticator.get_authenticated_user(None, {"username": name})
        self.user(name).sync_groups(authenticated["groups"])
        return sorted(g.name for g in orm.User.find(self.app.db, name).groups)

    def managed_config(self):
        c = self.config()
        c.JupyterHub.authenticator_class = ManagedGroupsAuthenticator
        c.Authenticator.manage_groups = True
        return c

    async def test_login_resets_api_set_groups_without_the_hook(self):
        await self.start_hub(self.managed_config())
        self.set_groups("gsi0001", rp.group_name(COURSE, "instructors"))  # as roster-sync does via the API
        self.assertEqual(await self.login("gsi0001"), ["staff"])

    async def test_login_keeps_roster_groups_with_the_hook(self):
        c = self.managed_config()
        rp.RosterProfiles(PROFILES, self.dir).install_post_auth_hook(c)
        await self.start_hub(c)
        self.assertEqual(
            await self.login("gsi0001"),
            [rp.group_name(COURSE, "instructors"), rp.group_name(OTHER, "students"), "staff"],
        )
        self.assertEqual(
            await self.login("instructor0002"), [rp.group_name(OTHER, "instructors"), ADMIN_GROUP, "staff"]
        )
        self.write(OTHER, "instructors")  # no longer an instructor: out of the admin group at next login
        self.assertEqual(await self.login("instructor0002"), ["staff"])


if __name__ == "__main__":
    unittest.main()
