"""Hub side of roster-sync: course profiles from roster files, for z2jh's KubeSpawner.

roster-sync writes ``{key}-students.txt`` and ``{key}-instructors.txt`` (one lower-case
address per line) into a directory the hub can read, and can keep the JupyterHub groups
``course::{key}::students`` / ``course::{key}::instructors`` in step through the REST API.
This module turns the ``custom.profiles`` of the helm values into per-user spawner
settings, in one of two ways:

* the hook path (:meth:`RosterProfiles.install`): a ``pre_spawn_hook`` that reads the
  roster files at every spawn;
* the group path (:meth:`RosterProfiles.install_group_overrides`): ``Spawner.group_overrides``
  keyed on the synced groups, no file access in the hub at all.

Invariants, whichever path applies a profile:

* a profile applies when its ``users:`` list names the user or, for a course key
  (``YYYY-term-NNNNN``), when the user is in its students or instructors roster. A roster
  address ``local@DOMAIN`` is the username ``local`` (``DOMAIN`` defaults to
  ``berkeley.edu``; an empty domain makes the whole address the username), exactly as
  roster-sync maps addresses to group members. Matching is case-insensitive and each
  profile is decided on its own;
* settings are applied on top of the spawner's *current* state (config, group_overrides,
  apply_user_options, an earlier hook), never on a copy saved earlier. What this module
  added at a previous run on the same Spawner object is taken out first, so nothing
  compounds and nothing freezes;
* ``volumes`` / ``volume_mounts`` keep the form they have: z2jh sets dicts, and a dict
  stays a dict, so a dict-form ``profile_list`` override still merges into it. A volume
  whose name, or a mount whose mountPath, is present already is not added again, and a
  mount naming no volume is dropped, so the pod stays valid;
* ``mem_limit`` / ``mem_guarantee`` only grow (the largest set value wins), a guarantee
  raised above the limit raises the limit, and a pod guard (``modify_pod_hook``, which runs
  after ``profile_list``) lowers any memory request that still exceeds its limit;
* roster files are read in a worker thread, cached by (mtime, size, inode); a missing
  roster directory is logged once, not silently treated as "nobody is enrolled";
* admin: the hook never touches a user's admin flag. Instructors who are students nowhere
  are members of one group (default ``roster-instructor-admins``) that holds the admin
  role; everyone else is taken out of it at their next spawn or login. Admins configured
  with ``Authenticator.admin_users`` or the ``admin`` role of ``hub.loadRoles`` are left
  alone, so neither side undoes the other at a restart;
* no log line names a user: with an empty username domain a username is an address.

The pure functions need only the standard library; the hooks run inside JupyterHub and
import it lazily.
"""

import asyncio
import copy
import functools
import inspect
import os
import re
import threading

__all__ = [
    "DEFAULT_ROSTER_DIR",
    "DEFAULT_GROUP_TEMPLATE",
    "DEFAULT_USERNAME_DOMAIN",
    "DEFAULT_ADMIN_GROUP",
    "is_course_key",
    "normalize_username",
    "usernames_from_lines",
    "group_name",
    "parse_memory",
    "merge_unique",
    "merge_memory",
    "apply_profiles",
    "Rosters",
    "evaluate",
    "guard_pod_memory",
    "RosterProfiles",
    "install",
]

DEFAULT_ROSTER_DIR = "/srv/jupyterhub/profiles.d"
DEFAULT_GROUP_TEMPLATE = "course::{key}::{list}"
DEFAULT_USERNAME_DOMAIN = "berkeley.edu"
DEFAULT_ADMIN_GROUP = "roster-instructor-admins"
ROSTER_KINDS = ("students", "instructors")
FIELDS = ("volumes", "volume_mounts", "mem_limit", "mem_guarantee")

_COURSE_KEY_RE = re.compile(r"^(?:(\d{4})-(spring|summer|fall)-(\d{1,6})|canvas-\d{1,12})$")
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(?:([kKMGT])(i?)B?|B)?$")
_LOG_PREFIX = "roster-profiles: "


def is_course_key(key):
    """True for a course key as roster-sync reads it: ``2030-fall-12345`` (SIS) or ``canvas-1234567`` (Canvas)."""
    return isinstance(key, str) and _COURSE_KEY_RE.match(key) is not None


def _suffix(domain):
    return "@" + domain.lower() if domain else ""


def normalize_username(name, domain=DEFAULT_USERNAME_DOMAIN):
    """Lower-case, trimmed username; ``local@DOMAIN`` maps to ``local``."""
    name = (name or "").strip().lower()
    suffix = _suffix(domain)
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    return name


def usernames_from_lines(lines, domain=DEFAULT_USERNAME_DOMAIN):
    """Usernames in roster lines, lower-cased.

    With a domain, a username is the local part of a line ending in ``@DOMAIN``; other
    lines (other domains, departmental subdomains such as ``@stat.berkeley.edu``, blank
    lines) are skipped, as roster-sync skips them for groups. With an empty domain every
    address is a username.
    """
    suffix = _suffix(domain)
    names = set()
    for line in lines:
        address = line.strip().lower()
        if not address or any(ch.isspace() for ch in address):
            continue
        if suffix:
            if not address.endswith(suffix):
                continue
            address = address[: -len(suffix)]
            if not address or "@" in address:
                continue
        names.add(address)
    return frozenset(names)


def group_name(key, kind, template=DEFAULT_GROUP_TEMPLATE):
    """The JupyterHub group roster-sync keeps for one course list (``kind``: students/instructors)."""
    return template.format(key=key, list=kind)


def parse_memory(value):
    """Bytes in a memory size; None when unset (None or an empty string).

    Accepts ints, floats and strings such as ``"1073741824"``, ``"512M"``, ``"2G"``,
    ``"1.5Gi"``, ``"4096Mi"``, ``"1T"``. K/M/G/T and Ki/Mi/Gi/Ti are all powers of 1024,
    as in JupyterHub's ByteSpecification. The suffix may be followed by ``B``. Anything
    else raises ValueError, e.g. Kubernetes' milli suffix ``"500m"``, which is never
    what a memory limit means.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("invalid memory size: {!r}".format(value))
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("invalid memory size: {!r}".format(value))
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    m = _MEMORY_RE.match(text)
    if not m:
        raise ValueError("invalid memory size: {!r}".format(value))
    number, unit, _binary = m.groups()
    return int(float(number) * _UNITS[(unit or "").upper()])


def _entries(items):
    """The entries of a KubeSpawner volume/mount setting, list or dict (sorted by key, as KubeSpawner does)."""
    if items is None:
        return []
    if isinstance(items, dict):
        return [items[k] for k in sorted(items)]
    return list(items)


def merge_unique(existing, additions, field, source, warnings):
    """``existing`` plus those ``additions`` whose ``field`` value is not present yet.

    The result has the form of ``existing``: a dict stays a dict (new entries get keys
    ``roster-{source}-{n}``), anything else becomes a list. The first entry for a name
    (volumes) or mountPath (mounts) wins; a later one that differs is dropped with a
    warning naming the profile. Returns new objects; the inputs are not modified.
    """
    as_dict = isinstance(existing, dict)
    merged = copy.deepcopy(existing) if as_dict else [copy.deepcopy(e) for e in _entries(existing)]
    seen = {}
    for item in _entries(merged):
        if isinstance(item, dict) and item.get(field) is not None:
            seen.setdefault(item[field], item)
    for n, item in enumerate(_entries(additions)):
        if not isinstance(item, dict):
            warnings.append("profile {}: ignored a {} entry that is not a mapping".format(source, field))
            continue
        value = item.get(field)
        if value is None and item in _entries(merged):
            continue
        if value is not None and value in seen:
            if seen[value] != item:
                warnings.append(
                    "profile {}: {} {!r} is already defined differently; kept the first".format(source, field, value)
                )
            continue
        kept = copy.deepcopy(item)
        if value is not None:
            seen[value] = kept
        if as_dict:
            key = "roster-{}-{}".format(source, n)
            while key in merged:
                key += "-"
            merged[key] = kept
        else:
            merged.append(kept)
    return merged


def _mounts_of_known_volumes(mounts, volumes, source, warnings):
    """The profile's mounts that name a volume of the pod; a mount naming none would make the API server reject it."""
    names = {v.get("name") for v in _entries(volumes) if isinstance(v, dict)}
    kept = []
    for mount in _entries(mounts):
        if isinstance(mount, dict) and mount.get("name") not in names:
            warnings.append(
                "profile {}: dropped the mount at {!r}: no volume named {!r} (with z2jh's dynamic storage the home "
                "volume is 'volume-{{user_server}}', with static storage 'home')".format(
                    source, mount.get("mountPath"), mount.get("name")
                )
            )
            continue
        kept.append(mount)
    return kept


def _larger(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _size(value, what, warnings):
    try:
        return parse_memory(value)
    except ValueError as e:
        warnings.append("{}: {}".format(what, e))
        return None


def merge_memory(mem_limit, mem_guarantee, data, source, warnings):
    """``(mem_limit, mem_guarantee)`` in bytes after applying one profile's sizes.

    Each becomes the larger of the current and the profile's value (unset values are
    skipped; an invalid one is skipped with a warning). A guarantee above the limit raises
    the limit: the profile says the user should get that much.
    """
    limit = _larger(
        _size(mem_limit, "current mem_limit", warnings),
        _size(data.get("mem_limit"), "profile {}: mem_limit".format(source), warnings),
    )
    guarantee = _larger(
        _size(mem_guarantee, "current mem_guarantee", warnings),
        _size(data.get("mem_guarantee"), "profile {}: mem_guarantee".format(source), warnings),
    )
    if limit is not None and guarantee is not None and guarantee > limit:
        limit = guarantee
    return limit, guarantee


def _profile_data(profiles, key):
    data = profiles.get(key)
    return data if isinstance(data, dict) else {}


def apply_profiles(state, profiles, keys, warnings):
    """``state`` (a dict of FIELDS) with the profiles ``keys`` applied in order; a new dict."""
    state = dict(state)
    for key in keys:
        data = _profile_data(profiles, key)
        state["volumes"] = merge_unique(state["volumes"], data.get("extraVolumes"), "name", key, warnings)
        mounts = _mounts_of_known_volumes(data.get("extraVolumeMounts"), state["volumes"], key, warnings)
        state["volume_mounts"] = merge_unique(state["volume_mounts"], mounts, "mountPath", key, warnings)
        state["mem_limit"], state["mem_guarantee"] = merge_memory(
            state["mem_limit"], state["mem_guarantee"], data, key, warnings
        )
    return state


class Rosters:
    """The roster files of one directory, cached by (mtime, size, inode).

    The methods block on the file system (NFS can take long), so the hooks call them
    in a worker thread, never on the hub's event loop.
    """

    def __init__(self, roster_dir=DEFAULT_ROSTER_DIR, username_domain=DEFAULT_USERNAME_DOMAIN):
        self.roster_dir = roster_dir
        self.username_domain = username_domain
        self._cache = {}
        self._lock = threading.Lock()
        self._dir_missing = False

    def check_directory(self):
        """A ``(level, message)`` when the directory went missing or came back since the last call, else None.

        Without its directory every roster is empty, so a mistyped path would otherwise
        quietly give every course member the default settings.
        """
        missing = not os.path.isdir(self.roster_dir)
        with self._lock:
            changed = missing != self._dir_missing
            self._dir_missing = missing
        if not changed:
            return None
        if missing:
            return "warning", "roster directory {} does not exist: every roster counts as empty".format(self.roster_dir)
        return "info", "roster directory {} is present again".format(self.roster_dir)

    def members(self, key, kind, warnings):
        """Usernames in ``{roster_dir}/{key}-{kind}.txt``; a missing file is an empty roster.

        An unreadable file is also empty, with a warning: failing safe means nobody
        gets course settings or admin rights from it. Only course keys have rosters, which
        also keeps a key from naming a file outside the directory.
        """
        if not is_course_key(key):
            return frozenset()
        path = os.path.join(self.roster_dir, "{}-{}.txt".format(key, kind))
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            with self._lock:
                cached = self._cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            with open(path, encoding="utf-8", errors="replace") as f:
                names = usernames_from_lines(f, self.username_domain)
        except FileNotFoundError:
            return frozenset()
        except OSError as e:
            warnings.append("cannot read roster {}: {}".format(path, e.strerror or e))
            return frozenset()
        with self._lock:
            self._cache[path] = (stamp, names)
        return names


def _users_list(data, domain):
    users = data.get("users")
    if users is None:
        return []
    if isinstance(users, str):
        users = [users]
    return [normalize_username(str(u), domain) for u in users]


def evaluate(profiles, rosters, username):
    """What ``custom.profiles`` means for one user. Blocks on the roster files.

    Returns a dict with ``matched`` (applied profile keys, in order), ``student_of`` and
    ``instructor_of`` (course keys whose roster lists the user) and ``warnings``.
    Course rosters are consulted only for course keys; a profile naming the user in its
    ``users:`` list applies without making the user a student or instructor.
    """
    warnings = []
    domain = rosters.username_domain
    user = normalize_username(username, domain)
    result = {"matched": [], "student_of": [], "instructor_of": [], "warnings": warnings}
    if not user:
        return result
    for key, data in (profiles or {}).items():
        if data is not None and not isinstance(data, dict):
            warnings.append("profile {}: not a mapping, skipped".format(key))
            continue
        data = data or {}
        listed = user in _users_list(data, domain)
        enrolled = False
        if is_course_key(key):
            for kind in ROSTER_KINDS:
                if user in rosters.members(key, kind, warnings):
                    result["{}_of".format(kind[:-1])].append(key)
                    enrolled = True
        if listed or enrolled:
            result["matched"].append(key)
    return result


def _is_admin_eligible(result):
    """Instructor somewhere and student nowhere: DataHub's rule for course admins."""
    return bool(result["instructor_of"]) and not result["student_of"]


def guard_pod_memory(spawner, pod):
    """Lower a container's memory request to its limit where it exceeds it; returns the pod.

    ``profile_list`` overrides are applied by KubeSpawner after every hook, so a chosen
    profile can lower the limit below a course's guarantee; the API server would reject
    that pod. The limit is the profile's explicit cap, so the request gives way.
    """
    for container in pod.spec.containers or []:
        resources = container.resources
        if resources is None or not resources.requests or not resources.limits:
            continue
        request, limit = resources.requests.get("memory"), resources.limits.get("memory")
        try:
            request_bytes, limit_bytes = parse_memory(request), parse_memory(limit)
        except ValueError:
            continue  # a Kubernetes quantity we do not parse: leave it to the API server
        if request_bytes is not None and limit_bytes is not None and request_bytes > limit_bytes:
            spawner.log.warning(
                _LOG_PREFIX + "container %s requested more memory than its limit; lowered the request to the limit",
                container.name,
            )
            resources.requests["memory"] = limit
    return pod


async def _maybe_await(value):
    if inspect.isawaitable(value):
        value = await value
    return value


def _configured(c, sections, name):
    """The value of ``name`` set in the first of ``sections`` of config ``c``, or None."""
    for section in sections:
        if section in c and name in c[section] and c[section][name] is not None:
            return c[section][name]
    return None


_APPLIED_ATTR = "_roster_profiles_applied"


def _without_previous_run(state, record):
    """``state`` minus what this module set on the same Spawner object before.

    An entry or size counts as ours only while it is unchanged; a value someone set since
    (group_overrides, apply_user_options, a hook) is their value and stays.
    """
    for field in ("volumes", "volume_mounts"):
        current = state[field]
        for key, entry in record[field]:
            if isinstance(current, dict):
                if key in current and current[key] == entry:
                    del current[key]
            elif entry in current:
                current.remove(entry)
    for field in ("mem_limit", "mem_guarantee"):
        before, after = record[field]
        if state[field] == after:
            state[field] = before
    return state


def _added(before, after):
    """The (key, entry) pairs ``merge_unique`` appended to ``before`` to make ``after``."""
    if isinstance(after, dict):
        return [(k, copy.deepcopy(v)) for k, v in after.items() if k not in before]
    return [(None, copy.deepcopy(e)) for e in after[len(_entries(before)):]]


class RosterProfiles:
    """``custom.profiles`` for one hub, with the hooks and settings that apply them."""

    def __init__(
        self,
        profiles,
        roster_dir=DEFAULT_ROSTER_DIR,
        *,
        username_domain=DEFAULT_USERNAME_DOMAIN,
        group_template=DEFAULT_GROUP_TEMPLATE,
        admin_group=DEFAULT_ADMIN_GROUP,
    ):
        self.profiles = dict(profiles or {})
        self.rosters = Rosters(roster_dir, username_domain)
        self.group_template = group_template
        self.admin_group = admin_group or None
        self._admin_role_warned = False

    def __deepcopy__(self, memo):
        # traitlets deep-copies config values such as group_overrides into each spawner;
        # every copy must share this object's roster cache and warn-once state.
        return self

    # --- evaluation ---------------------------------------------------------------

    def _evaluate_blocking(self, username):
        status = self.rosters.check_directory()
        return status, evaluate(self.profiles, self.rosters, username)

    async def evaluate_user(self, username, log):
        """:func:`evaluate` in a worker thread, with its warnings logged."""
        loop = asyncio.get_running_loop()
        status, result = await loop.run_in_executor(None, functools.partial(self._evaluate_blocking, username))
        if status is not None:
            getattr(log, status[0])(_LOG_PREFIX + "%s", status[1])
        for message in result["warnings"]:
            log.warning(_LOG_PREFIX + "%s", message)
        return result

    def roster_groups(self, result):
        """The groups a user belongs in according to the rosters (course lists and, if eligible, the admin group)."""
        groups = {group_name(k, "students", self.group_template) for k in result["student_of"]}
        groups |= {group_name(k, "instructors", self.group_template) for k in result["instructor_of"]}
        if self.admin_group and _is_admin_eligible(result):
            groups.add(self.admin_group)
        return groups

    # --- hook path ----------------------------------------------------------------

    def apply_to_spawner(self, spawner, result):
        """Apply the matched profiles to the spawner's current settings."""
        state = {f: copy.deepcopy(getattr(spawner, f)) for f in FIELDS}
        record = getattr(spawner, _APPLIED_ATTR, None)
        if record is not None:
            state = _without_previous_run(state, record)
        warnings = []
        new = apply_profiles(state, self.profiles, result["matched"], warnings)
        for message in warnings:
            spawner.log.warning(_LOG_PREFIX + "%s", message)
        record = {f: _added(state[f], new[f]) for f in ("volumes", "volume_mounts")}
        record.update({f: (state[f], new[f]) for f in ("mem_limit", "mem_guarantee")})
        for field in FIELDS:
            setattr(spawner, field, new[field])
        setattr(spawner, _APPLIED_ATTR, record)
        if result["matched"]:
            spawner.log.info(_LOG_PREFIX + "applied profiles %s", ", ".join(map(str, result["matched"])))

    async def pre_spawn_hook(self, spawner):
        result = await self.evaluate_user(spawner.user.name, spawner.log)
        self.apply_to_spawner(spawner, result)
        if self.admin_group:
            try:
                self.sync_admin_group(spawner.user, _is_admin_eligible(result), spawner.config, spawner.log)
            except Exception:  # admin rights are never worth a failed spawn
                spawner.log.exception(_LOG_PREFIX + "could not update the admin group")

    def install(self, c):
        """Install the hook path: ``pre_spawn_hook`` (after any configured one) and the pod memory guard."""
        previous = _configured(c, ("KubeSpawner", "Spawner"), "pre_spawn_hook")

        async def roster_profiles_pre_spawn_hook(spawner):
            if previous is not None:
                await _maybe_await(previous(spawner))
            await self.pre_spawn_hook(spawner)

        c.KubeSpawner.pre_spawn_hook = roster_profiles_pre_spawn_hook
        _install_pod_guard(c)
        return self

    # --- admin ----------------------------------------------------------------------

    def sync_admin_group(self, user, eligible, config, log):
        """Put the user in the admin group iff eligible; make sure the group holds the admin role.

        Runs on the event loop: the hub's database session belongs to it.
        """
        from jupyterhub import orm, roles

        db = user.db
        orm_user = user.orm_user
        group = orm.Group.find(db, self.admin_group)
        if group is None:
            if not eligible:
                return
            group = orm.Group(name=self.admin_group)
            db.add(group)
        if eligible and group not in orm_user.groups:
            orm_user.groups.append(group)
            log.info(_LOG_PREFIX + "added a course instructor to group %s", self.admin_group)
        elif not eligible and group in orm_user.groups:
            orm_user.groups.remove(group)
            log.info(_LOG_PREFIX + "removed a user in no instructor roster from group %s", self.admin_group)
        db.commit()
        self._ensure_admin_role(db, group, config, log, orm, roles)

    def _ensure_admin_role(self, db, group, config, log, orm, roles):
        """Grant the admin role to the group unless ``load_roles`` owns the admin role's members.

        When ``load_roles`` declares the admin role, JupyterHub resets its member groups
        to the declared list at every start; granting the role here would be undone at
        each restart and redone at the next spawn. The configuration decides instead.
        """
        load_roles = config.get("JupyterHub", {}).get("load_roles", []) if config else []
        spec = next((r for r in load_roles if isinstance(r, dict) and r.get("name") == "admin"), None)
        if spec is None:
            roles.grant_role(db, group, orm.Role.find(db, "admin"))
        elif self.admin_group not in (spec.get("groups") or ()) and not self._admin_role_warned:
            self._admin_role_warned = True
            log.warning(
                _LOG_PREFIX + "the admin role in load_roles does not list group %s, so course instructors get no "
                "admin rights; add the group to the role, or pass admin_group=None",
                self.admin_group,
            )

    # --- group path -----------------------------------------------------------------

    def group_overrides(self):
        """``Spawner.group_overrides`` entries for the course profiles, keyed on the synced groups.

        Values are callables, so each is computed from the spawner's state at that moment
        with the same merge rules as the hook (dict forms kept, no duplicates, memory only
        grows). Profiles that are not courses (e.g. ``users:`` lists) have no group and
        are left out.
        """
        overrides = {}
        courses = [k for k in self.profiles if is_course_key(k)]
        for n, key in enumerate(courses):
            overrides["roster-{:04d}-{}".format(n, key)] = {
                "groups": [group_name(key, kind, self.group_template) for kind in ROSTER_KINDS],
                # Insertion order matters: mounts are checked against the volumes already
                # merged, and the guarantee against the limit already raised.
                "spawner_override": {field: functools.partial(self._override_value, key, field) for field in FIELDS},
            }
        return overrides

    def _override_value(self, key, field, spawner):
        state = {f: copy.deepcopy(getattr(spawner, f)) for f in FIELDS}
        warnings = []
        value = apply_profiles(state, self.profiles, [key], warnings)[field]
        # Each field's callable sees the same profile, so log the warnings only once.
        if field == "volume_mounts":
            for message in warnings:
                spawner.log.warning(_LOG_PREFIX + "%s", message)
        if isinstance(value, dict):
            # JupyterHub merges a dict override into the current dict, and a None inside
            # it deletes a key (z2jh's home mount has "subPath: None"); so hand over only
            # the entries to add.
            return dict(_added(state[field], value))
        return value

    def install_group_overrides(self, c):
        """Install the group path: add :meth:`group_overrides` to ``c.KubeSpawner.group_overrides`` and the pod guard."""
        existing = _configured(c, ("KubeSpawner", "Spawner"), "group_overrides")
        if callable(existing):
            raise ValueError("group_overrides is a callable; merge roster_profiles' group_overrides() into it yourself")
        merged = dict(existing or {})
        merged.update(self.group_overrides())
        c.KubeSpawner.group_overrides = merged
        _install_pod_guard(c)
        return self

    # --- authenticator-managed groups -------------------------------------------------

    async def post_auth_hook(self, authenticator, handler, authentication):
        """Add the roster groups to a login's group list when the authenticator manages groups.

        With ``Authenticator.manage_groups`` JupyterHub replaces the user's groups with
        the login's list at every login, which drops the groups roster-sync set through
        the API; adding them here keeps them.
        """
        if not authenticator.manage_groups or authentication.get("groups") is None:
            return authentication
        result = await self.evaluate_user(authentication["name"], authenticator.log)
        groups = list(authentication["groups"])
        groups += sorted(self.roster_groups(result) - set(groups))
        authentication["groups"] = groups
        return authentication

    def install_post_auth_hook(self, c):
        """Set ``c.Authenticator.post_auth_hook``, running a configured one first."""
        previous = _configured(c, ("Authenticator",), "post_auth_hook")

        async def roster_profiles_post_auth_hook(authenticator, handler, authentication):
            if previous is not None:
                authentication = await _maybe_await(previous(authenticator, handler, authentication))
            if authentication is None:
                return None
            return await self.post_auth_hook(authenticator, handler, authentication)

        c.Authenticator.post_auth_hook = roster_profiles_post_auth_hook
        return self


def _install_pod_guard(c):
    """Set ``c.KubeSpawner.modify_pod_hook`` to :func:`guard_pod_memory`, after any configured hook, once."""
    previous = _configured(c, ("KubeSpawner",), "modify_pod_hook")
    if getattr(previous, "roster_profiles_guard", False):
        return

    async def roster_profiles_modify_pod_hook(spawner, pod):
        if previous is not None:
            pod = await _maybe_await(previous(spawner, pod))
        return guard_pod_memory(spawner, pod)

    roster_profiles_modify_pod_hook.roster_profiles_guard = True
    c.KubeSpawner.modify_pod_hook = roster_profiles_modify_pod_hook


def install(c, profiles, roster_dir=DEFAULT_ROSTER_DIR, **options):
    """Install the hook path on config ``c``; ``options`` as for :class:`RosterProfiles`. Returns the instance."""
    return RosterProfiles(profiles, roster_dir, **options).install(c)
