"""Hub side of roster-sync: course profiles from roster files, for z2jh's KubeSpawner.

roster-sync writes ``{key}-students.txt`` and ``{key}-instructors.txt`` (one address per
line) into a directory that the hub can read. At every spawn this module applies the
``custom.profiles`` entries that the user belongs to. These are DataHub's semantics,
without the bugs of the original hub code (see the README, "Hub side"):

* profiles are visited in order. A profile applies when its ``users:`` list names the
  user, or else when the user is in the course's students or instructors file. A
  username is the local part of a line ending in ``@berkeley.edu``. Other lines are
  ignored, and a missing file is an empty roster;
* matching is case-insensitive, and each profile is decided on its own (no flag carries
  over from one profile to the next);
* an applied profile adds its ``extraVolumes`` / ``extraVolumeMounts``. A volume whose
  name, or a mount whose mountPath, is already present is not added again, so the pod
  stays valid;
* ``mem_limit`` / ``mem_guarantee`` become the largest of the base value and every
  applied profile's value. Sizes may be given in bytes or with K/M/G/T or Ki/Mi/Gi/Ti
  (all powers of 1024, as in JupyterHub), and unset values are skipped;
* a student in any course profile is not an admin; otherwise an instructor in any course
  profile is an admin; anyone else keeps their admin flag. Users listed in
  ``Authenticator.admin_users`` are never demoted, so the two do not fight at every
  spawn and hub restart.

The logic is in pure functions (:func:`evaluate` and its helpers), which take the
profiles mapping, a directory and a username. :func:`apply_to_spawner` and
:func:`install` are the thin glue for a KubeSpawner ``pre_spawn_hook``. Python 3.8+,
standard library only.
"""

import copy
import os
import re

__all__ = [
    "BERKELEY_SUFFIX",
    "normalize_username",
    "usernames_from_lines",
    "read_roster",
    "parse_memory",
    "merge_unique",
    "evaluate",
    "apply_to_spawner",
    "make_pre_spawn_hook",
    "install",
]

BERKELEY_SUFFIX = "@berkeley.edu"
ROSTER_KINDS = ("students", "instructors")

_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(?:([kKMGT])(i?)B?|B)?$")


def normalize_username(name):
    """Lower-case, trimmed username. A full ``...@berkeley.edu`` address maps to its local part."""
    name = (name or "").strip().lower()
    if name.endswith(BERKELEY_SUFFIX):
        name = name[: -len(BERKELEY_SUFFIX)]
    return name


def usernames_from_lines(lines):
    """Usernames from roster lines: the local part of each line ending in @berkeley.edu.

    Blank lines and other addresses (other domains, departmental subdomains such as
    ``@stat.berkeley.edu``) are ignored. The result is lower-cased.
    """
    names = set()
    for line in lines:
        address = line.strip().lower()
        if not address.endswith(BERKELEY_SUFFIX):
            continue
        local = address[: -len(BERKELEY_SUFFIX)]
        if local and "@" not in local and not any(ch.isspace() for ch in local):
            names.add(local)
    return frozenset(names)


def _roster_path(roster_dir, key, kind):
    key = str(key)
    # Profile keys are file-name components. A key with a path separator (or "." / "..")
    # could name a file outside the directory, so such a key has no roster.
    if not key or key in (".", "..") or "/" in key or "\\" in key or "\0" in key:
        return None
    return os.path.join(roster_dir, "{}-{}.txt".format(key, kind))


def read_roster(roster_dir, key, kind, warnings=None):
    """Usernames in ``{roster_dir}/{key}-{kind}.txt``; a missing file is an empty roster.

    An unreadable file is also empty, with a message appended to ``warnings``. Failing
    safe here means nobody is recognised as a student, so nobody is demoted.
    """
    path = _roster_path(roster_dir, key, kind)
    if path is None:
        return frozenset()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return usernames_from_lines(f)
    except FileNotFoundError:
        return frozenset()
    except OSError as e:
        if warnings is not None:
            warnings.append("cannot read roster {}: {}".format(path, e.strerror or e))
        return frozenset()


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


def _as_list(items):
    """KubeSpawner accepts volumes/mounts as a list or as a dict (sorted by key)."""
    if items is None:
        return []
    if isinstance(items, dict):
        return [items[k] for k in sorted(items)]
    return list(items)


def merge_unique(existing, additions, field, source, warnings):
    """``existing`` plus those ``additions`` whose ``field`` value is not present yet.

    The first entry for a name (volumes) or mountPath (mounts) wins. A later entry with
    the same key is dropped; if it differs from the kept one, a warning names the
    profile. Entries without the field are added unless an identical entry exists.
    Returns a new list of copies; the inputs are not modified.
    """
    merged = [copy.deepcopy(item) for item in _as_list(existing)]
    seen = {}
    for item in merged:
        if isinstance(item, dict) and item.get(field) is not None:
            seen.setdefault(item[field], item)
    for item in _as_list(additions):
        if not isinstance(item, dict):
            warnings.append("profile {}: ignored a {} entry that is not a mapping".format(source, field))
            continue
        key = item.get(field)
        if key is None:
            if item not in merged:
                merged.append(copy.deepcopy(item))
            continue
        if key in seen:
            if seen[key] != item:
                warnings.append(
                    "profile {}: {} {!r} is already defined differently; kept the first".format(source, field, key)
                )
            continue
        kept = copy.deepcopy(item)
        seen[key] = kept
        merged.append(kept)
    return merged


def _users_list(data):
    users = data.get("users")
    if users is None:
        return []
    if isinstance(users, str):
        users = [users]
    return [normalize_username(str(u)) for u in users]


def evaluate(
    profiles,
    roster_dir,
    username,
    base_volumes=None,
    base_volume_mounts=None,
    base_mem_limit=None,
    base_mem_guarantee=None,
    protected_admin=False,
):
    """Decide what ``custom.profiles`` means for one user. Pure apart from reading files.

    Returns a dict with:
      matched         keys of the applied profiles, in order
      is_student      True if the user is in some course's students file
      is_instructor   True if the user is in some course's instructors file
      admin           False (student anywhere), True (else instructor anywhere), or
                      None (leave the flag alone; also when ``protected_admin`` and the
                      rule would demote)
      volumes, volume_mounts   base entries plus the applied profiles' extras, deduplicated
      mem_limit, mem_guarantee bytes (int) or None when nothing sets them
      warnings        human-readable problems (bad sizes, conflicting mounts, ...)
    """
    warnings = []
    user = normalize_username(username)
    volumes = merge_unique(base_volumes, [], "name", "base", warnings)
    mounts = merge_unique(base_volume_mounts, [], "mountPath", "base", warnings)

    def base_size(value, what):
        try:
            return parse_memory(value)
        except ValueError as e:
            warnings.append("base {}: {}".format(what, e))
            return None

    mem_limit = base_size(base_mem_limit, "mem_limit")
    mem_guarantee = base_size(base_mem_guarantee, "mem_guarantee")
    matched = []
    is_student = False
    is_instructor = False

    for key, data in (profiles or {}).items():
        if data is None:
            data = {}
        if not isinstance(data, dict):
            warnings.append("profile {}: not a mapping, skipped".format(key))
            continue
        if user and user in _users_list(data):
            applies = True  # an explicit users: list never changes admin flags
        else:
            student = bool(user) and user in read_roster(roster_dir, key, "students", warnings)
            instructor = bool(user) and user in read_roster(roster_dir, key, "instructors", warnings)
            is_student = is_student or student
            is_instructor = is_instructor or instructor
            applies = student or instructor
        if not applies:
            continue
        matched.append(key)
        volumes = merge_unique(volumes, data.get("extraVolumes"), "name", key, warnings)
        mounts = merge_unique(mounts, data.get("extraVolumeMounts"), "mountPath", key, warnings)
        for field in ("mem_limit", "mem_guarantee"):
            try:
                size = parse_memory(data.get(field))
            except ValueError as e:
                warnings.append("profile {}: {}: {}".format(key, field, e))
                continue
            if size is None:
                continue
            if field == "mem_limit":
                mem_limit = size if mem_limit is None else max(mem_limit, size)
            else:
                mem_guarantee = size if mem_guarantee is None else max(mem_guarantee, size)

    # A guarantee above the limit would make an invalid pod. A profile that raises the
    # guarantee means the user should get that much, so raise the limit to match.
    if mem_limit is not None and mem_guarantee is not None and mem_guarantee > mem_limit:
        warnings.append("mem_guarantee above mem_limit; raised mem_limit to match")
        mem_limit = mem_guarantee

    if is_student:
        admin = None if protected_admin else False
    elif is_instructor:
        admin = True
    else:
        admin = None

    return {
        "matched": matched,
        "is_student": is_student,
        "is_instructor": is_instructor,
        "admin": admin,
        "volumes": volumes,
        "volume_mounts": mounts,
        "mem_limit": mem_limit,
        "mem_guarantee": mem_guarantee,
        "warnings": warnings,
    }


# --- KubeSpawner glue -------------------------------------------------------------------

_BASE_ATTR = "_roster_profiles_base"


def _spawner_base(spawner):
    """The spawner's own settings as they were before this module first touched them.

    A Spawner object lives as long as the hub and is reused for every spawn of its
    user. Each spawn must start from the configured values. Otherwise a volume or
    memory size added for a course the user has since left would stay until the hub
    restarts.
    """
    base = getattr(spawner, _BASE_ATTR, None)
    if base is None:
        base = {
            "volumes": copy.deepcopy(_as_list(getattr(spawner, "volumes", None))),
            "volume_mounts": copy.deepcopy(_as_list(getattr(spawner, "volume_mounts", None))),
            "mem_limit": getattr(spawner, "mem_limit", None),
            "mem_guarantee": getattr(spawner, "mem_guarantee", None),
        }
        setattr(spawner, _BASE_ATTR, base)
    return base


def _set_admin(user, value, log):
    user.admin = value
    db = getattr(user, "db", None)
    try:  # JupyterHub >= 2: the admin flag is backed by the "admin" role
        from jupyterhub.roles import assign_default_roles
    except ImportError:
        assign_default_roles = None
    if db is not None:
        if assign_default_roles is not None:
            assign_default_roles(db, entity=user)
        db.commit()
    log.info("roster-profiles: set admin=%s for %s", value, user.name)


def apply_to_spawner(spawner, profiles, roster_dir, protected_admins=()):
    """Apply :func:`evaluate` to a KubeSpawner before it starts. Returns the result dict."""
    user = spawner.user
    log = spawner.log
    base = _spawner_base(spawner)
    protected = {normalize_username(str(a)) for a in (protected_admins or ())}
    result = evaluate(
        profiles,
        roster_dir,
        user.name,
        base_volumes=base["volumes"],
        base_volume_mounts=base["volume_mounts"],
        base_mem_limit=base["mem_limit"],
        base_mem_guarantee=base["mem_guarantee"],
        protected_admin=normalize_username(user.name) in protected,
    )
    for message in result["warnings"]:
        log.warning("roster-profiles: %s", message)
    spawner.volumes = result["volumes"]
    spawner.volume_mounts = result["volume_mounts"]
    spawner.mem_limit = result["mem_limit"]
    spawner.mem_guarantee = result["mem_guarantee"]
    if result["admin"] is not None and bool(user.admin) != result["admin"]:
        try:
            _set_admin(user, result["admin"], log)
        except Exception:  # never block a spawn on the admin flag
            log.exception("roster-profiles: could not update admin flag for %s", user.name)
    if result["matched"]:
        log.info("roster-profiles: %s gets profiles %s", user.name, ", ".join(map(str, result["matched"])))
    return result


def make_pre_spawn_hook(profiles, roster_dir, previous=None):
    """A ``pre_spawn_hook`` applying the profiles, after ``previous`` (an existing hook) if given."""

    async def roster_profiles_pre_spawn_hook(spawner):
        if previous is not None:
            outcome = previous(spawner)
            if hasattr(outcome, "__await__"):
                await outcome
        authenticator = getattr(spawner, "authenticator", None)
        admins = getattr(authenticator, "admin_users", None) or ()
        apply_to_spawner(spawner, profiles, roster_dir, protected_admins=admins)

    return roster_profiles_pre_spawn_hook


def install(c, profiles, roster_dir="/srv/jupyterhub/profiles.d"):
    """Set ``c.KubeSpawner.pre_spawn_hook``, running an already configured hook first.

    A hook set on ``c.KubeSpawner`` or on ``c.Spawner`` would otherwise be replaced
    silently (the KubeSpawner setting wins over the Spawner one).
    """
    previous = None
    for section in (c.KubeSpawner, c.Spawner):
        if "pre_spawn_hook" in section and section["pre_spawn_hook"] is not None:
            previous = section["pre_spawn_hook"]
            break
    c.KubeSpawner.pre_spawn_hook = make_pre_spawn_hook(profiles or {}, roster_dir, previous)
