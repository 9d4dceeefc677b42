"""Tests for roster_profiles (standard library only).

Run from the repository root:  python3 -m unittest discover -s hub -v
All names and addresses are made up.
"""

import asyncio
import os
import tempfile
import unittest

import roster_profiles as rp

GI = 1024 ** 3
MI = 1024 ** 2


class RosterDirTest(unittest.TestCase):
    """A temporary roster directory with helpers to write roster files."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, key, kind, *lines):
        with open(os.path.join(self.dir, "{}-{}.txt".format(key, kind)), "w") as f:
            f.write("".join(line + "\n" for line in lines))


class UsernameTest(unittest.TestCase):
    def test_local_part_of_berkeley_addresses_lower_cased(self):
        names = rp.usernames_from_lines(["Student0001.Example@Berkeley.EDU\n", "  student0002@berkeley.edu  \n"])
        self.assertEqual(names, {"student0001.example", "student0002"})

    def test_non_berkeley_lines_are_ignored(self):
        names = rp.usernames_from_lines(
            [
                "student0003@example.com\n",
                "student0006@stat.berkeley.edu\n",  # departmental subdomain: not a hub username
                "student0007@berkeley.edu.example.org\n",
                "\n",
                "not an address\n",
                "@berkeley.edu\n",
                "student0005@berkeley.edu\n",
            ]
        )
        self.assertEqual(names, {"student0005"})

    def test_normalize_username(self):
        self.assertEqual(rp.normalize_username("  Student0001 "), "student0001")
        self.assertEqual(rp.normalize_username("Student0001@Berkeley.edu"), "student0001")
        self.assertEqual(rp.normalize_username(None), "")


class ReadRosterTest(RosterDirTest):
    def test_missing_file_is_empty(self):
        self.assertEqual(rp.read_roster(self.dir, "2030-fall-12345", "students"), frozenset())
        self.assertEqual(rp.read_roster("/nonexistent/dir", "2030-fall-12345", "students"), frozenset())

    def test_reads_file(self):
        self.write("2030-fall-12345", "instructors", "Instructor0009@berkeley.edu", "instructor0009@example.org")
        self.assertEqual(rp.read_roster(self.dir, "2030-fall-12345", "instructors"), {"instructor0009"})

    def test_key_cannot_escape_the_directory(self):
        outside = tempfile.NamedTemporaryFile("w", suffix="-students.txt", delete=False)
        try:
            outside.write("student0001@berkeley.edu\n")
            outside.close()
            key = "../" + os.path.basename(outside.name)[: -len("-students.txt")]
            self.assertEqual(rp.read_roster(self.dir, key, "students"), frozenset())
        finally:
            os.unlink(outside.name)

    def test_unreadable_path_is_empty_with_warning(self):
        os.mkdir(os.path.join(self.dir, "2030-fall-12345-students.txt"))  # a directory, not a file
        warnings = []
        self.assertEqual(rp.read_roster(self.dir, "2030-fall-12345", "students", warnings), frozenset())
        self.assertEqual(len(warnings), 1)


class ParseMemoryTest(unittest.TestCase):
    def test_units(self):
        cases = {
            "1073741824": GI,
            1073741824: GI,
            2.5: 2,
            "512M": 512 * MI,
            "512Mi": 512 * MI,
            "2G": 2 * GI,
            "2Gi": 2 * GI,
            "1.5Gi": int(1.5 * GI),
            "4096M": 4 * GI,
            "100K": 100 * 1024,
            "100k": 100 * 1024,
            "100Ki": 100 * 1024,
            "1T": 1024 * GI,
            "1Ti": 1024 * GI,
            "2GiB": 2 * GI,
            "64B": 64,
            " 3G ": 3 * GI,
        }
        for value, expected in cases.items():
            with self.subTest(value=value):
                self.assertEqual(rp.parse_memory(value), expected)

    def test_unset(self):
        self.assertIsNone(rp.parse_memory(None))
        self.assertIsNone(rp.parse_memory(""))

    def test_invalid(self):
        for value in ("500m", "2g", "lots", "1.2.3G", "-1G", "G", True, -5, "2Pi"):
            with self.subTest(value=value):
                with self.assertRaises(ValueError):
                    rp.parse_memory(value)


class MergeUniqueTest(unittest.TestCase):
    def test_dedup_by_key_first_wins_and_inputs_untouched(self):
        base = [{"name": "home", "mountPath": "/home/jovyan"}]
        extra = [
            {"name": "home", "mountPath": "/home/jovyan"},  # identical: silently skipped
            {"name": "home", "mountPath": "/home/jovyan", "readOnly": True},  # conflicting
            {"name": "home", "mountPath": "/srv/shared", "subPath": "_shared"},
        ]
        warnings = []
        merged = rp.merge_unique(base, extra, "mountPath", "p", warnings)
        self.assertEqual([m["mountPath"] for m in merged], ["/home/jovyan", "/srv/shared"])
        self.assertNotIn("readOnly", merged[0])
        self.assertEqual(len(warnings), 1)
        merged[1]["subPath"] = "changed"
        self.assertEqual(extra[2]["subPath"], "_shared")
        self.assertEqual(len(base), 1)

    def test_dict_form_is_accepted(self):
        merged = rp.merge_unique({"b": {"name": "v2"}, "a": {"name": "v1"}}, [{"name": "v1"}], "name", "p", [])
        self.assertEqual(merged, [{"name": "v1"}, {"name": "v2"}])


PROFILES = {
    # a course: membership comes from the roster files
    "2030-fall-11111": {
        "mem_limit": "4G",
        "mem_guarantee": "1Gi",
        "extraVolumeMounts": [
            {"name": "home", "mountPath": "/home/jovyan/shared", "subPath": "_shared/c1", "readOnly": True}
        ],
    },
    # another course with the same mount and a larger limit in another unit
    "2030-fall-22222": {
        "mem_limit": "6144Mi",
        "mem_guarantee": "512M",
        "extraVolumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "extraVolumeMounts": [
            {"name": "home", "mountPath": "/home/jovyan/shared", "subPath": "_shared/c1", "readOnly": True},
            {"name": "datasets", "mountPath": "/srv/datasets", "readOnly": True},
        ],
    },
    # not a course: an explicit users list
    "module-leads": {
        "users": ["Lead0001", "lead0002"],
        "mem_limit": "8G",
        "extraVolumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "extraVolumeMounts": [{"name": "datasets", "mountPath": "/srv/datasets", "readOnly": True}],
    },
    # a profile with no settings at all
    "2030-fall-33333": None,
}


class CourseFixture(RosterDirTest):
    """Roster files for the courses in PROFILES."""

    def setUp(self):
        super().setUp()
        self.write("2030-fall-11111", "students", "student0001@berkeley.edu", "student0002@berkeley.edu")
        self.write("2030-fall-11111", "instructors", "gsi0001@berkeley.edu")
        self.write("2030-fall-22222", "students", "Gsi0001@Berkeley.edu", "student0003@example.com")
        self.write("2030-fall-22222", "instructors", "instructor0002@berkeley.edu", "student0001@berkeley.edu")
        self.write("2030-fall-33333", "instructors", "instructor0003@berkeley.edu")


class EvaluateTest(CourseFixture):
    def eval(self, username, **kw):
        return rp.evaluate(PROFILES, self.dir, username, **kw)

    def test_case_insensitive_match(self):
        for name in ("student0001", "STUDENT0001", "Student0001", "student0001@berkeley.edu"):
            with self.subTest(name=name):
                self.assertIn("2030-fall-11111", self.eval(name)["matched"])
        # gsi0001 is listed as Gsi0001@Berkeley.edu in course 22222
        self.assertEqual(self.eval("gsi0001")["matched"], ["2030-fall-11111", "2030-fall-22222"])

    def test_non_member_gets_nothing(self):
        result = self.eval("student0003")  # only listed with a non-berkeley address
        self.assertEqual(result["matched"], [])
        self.assertIsNone(result["admin"])
        self.assertEqual(result["volumes"], [])
        self.assertIsNone(result["mem_limit"])
        self.assertEqual(result["warnings"], [])

    def test_missing_files_mean_empty_rosters(self):
        result = rp.evaluate(PROFILES, os.path.join(self.dir, "nope"), "student0001")
        self.assertEqual(result["matched"], [])
        self.assertIsNone(result["admin"])

    def test_no_cumulative_flags(self):
        # student0002 matches the first course only; later profiles must not apply to him
        result = self.eval("student0002")
        self.assertEqual(result["matched"], ["2030-fall-11111"])
        self.assertEqual([v["name"] for v in result["volumes"]], [])
        self.assertEqual(result["mem_limit"], 4 * GI)

    def test_memory_max_across_units_and_base(self):
        result = self.eval("gsi0001", base_mem_limit=2 * GI, base_mem_guarantee="256M")
        self.assertEqual(result["mem_limit"], 6 * GI)  # max(2G, 4G, 6144Mi)
        self.assertEqual(result["mem_guarantee"], 1 * GI)  # max(256M, 1Gi, 512M)
        # a base larger than every profile stays
        result = self.eval("gsi0001", base_mem_limit="10Gi", base_mem_guarantee=None)
        self.assertEqual(result["mem_limit"], 10 * GI)
        self.assertEqual(result["mem_guarantee"], 1 * GI)

    def test_unset_memory_everywhere_stays_unset(self):
        self.write("2030-fall-33333", "students", "student0004@berkeley.edu")
        result = self.eval("student0004")
        self.assertEqual(result["matched"], ["2030-fall-33333"])
        self.assertIsNone(result["mem_limit"])
        self.assertIsNone(result["mem_guarantee"])

    def test_invalid_memory_is_skipped_with_warning(self):
        profiles = {"2030-fall-11111": {"mem_limit": "lots", "mem_guarantee": "2G"}}
        result = rp.evaluate(profiles, self.dir, "student0001", base_mem_limit="4G")
        self.assertEqual(result["mem_limit"], 4 * GI)
        self.assertEqual(result["mem_guarantee"], 2 * GI)
        self.assertEqual(len(result["warnings"]), 1)

    def test_guarantee_above_limit_raises_limit(self):
        profiles = {"2030-fall-11111": {"mem_guarantee": "4G"}}
        result = rp.evaluate(profiles, self.dir, "student0001", base_mem_limit="2G", base_mem_guarantee="1G")
        self.assertEqual(result["mem_guarantee"], 4 * GI)
        self.assertEqual(result["mem_limit"], 4 * GI)

    def test_mounts_and_volumes_deduplicated(self):
        base_volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}]
        base_mounts = [{"name": "home", "mountPath": "/home/jovyan", "subPath": "home/{username}"}]
        # gsi0001 matches both courses, which share a mount
        result = self.eval("gsi0001", base_volumes=base_volumes, base_volume_mounts=base_mounts)
        self.assertEqual([v["name"] for v in result["volumes"]], ["home", "datasets"])
        paths = [m["mountPath"] for m in result["volume_mounts"]]
        self.assertEqual(paths, ["/home/jovyan", "/home/jovyan/shared", "/srv/datasets"])
        self.assertEqual(len(paths), len(set(paths)))
        self.assertEqual(result["warnings"], [])

    def test_student_anywhere_beats_instructor(self):
        # student0001: student in 11111, instructor in 22222 -> not admin
        result = self.eval("student0001")
        self.assertTrue(result["is_student"])
        self.assertTrue(result["is_instructor"])
        self.assertIs(result["admin"], False)
        # gsi0001: instructor in 11111, student in 22222 (order reversed) -> not admin
        self.assertIs(self.eval("gsi0001")["admin"], False)
        # instructor0002: instructor only -> admin
        instructor0002 = self.eval("instructor0002")
        self.assertIs(instructor0002["admin"], True)
        self.assertEqual(instructor0002["matched"], ["2030-fall-22222"])
        # a profile with no settings (None) still makes its instructors admins
        self.assertIs(self.eval("instructor0003")["admin"], True)

    def test_protected_admin_is_not_demoted(self):
        self.assertIsNone(self.eval("student0001", protected_admin=True)["admin"])
        self.assertIs(self.eval("instructor0002", protected_admin=True)["admin"], True)

    def test_users_list_profiles(self):
        lead0001 = self.eval("LEAD0001")
        self.assertEqual(lead0001["matched"], ["module-leads"])
        self.assertIsNone(lead0001["admin"])  # a users: list never changes admin flags
        self.assertEqual(lead0001["mem_limit"], 8 * GI)
        self.assertEqual([m["mountPath"] for m in lead0001["volume_mounts"]], ["/srv/datasets"])
        # a single string is accepted as a one-element list
        result = rp.evaluate({"x": {"users": "Lead0002", "mem_limit": "1G"}}, self.dir, "lead0002")
        self.assertEqual(result["matched"], ["x"])

    def test_users_list_and_course_combined(self):
        profiles = dict(PROFILES)
        profiles["module-leads"] = dict(PROFILES["module-leads"], users=["gsi0001"])
        result = rp.evaluate(profiles, self.dir, "gsi0001")
        self.assertEqual(result["matched"], ["2030-fall-11111", "2030-fall-22222", "module-leads"])
        self.assertEqual(result["mem_limit"], 8 * GI)
        self.assertEqual([v["name"] for v in result["volumes"]], ["datasets"])

    def test_empty_profiles(self):
        for profiles in (None, {}):
            result = rp.evaluate(profiles, self.dir, "student0001", base_mem_limit="1G")
            self.assertEqual(result["matched"], [])
            self.assertEqual(result["mem_limit"], GI)


# --- glue -----------------------------------------------------------------------------


class FakeLog:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(("info", msg % args))

    def warning(self, msg, *args):
        self.lines.append(("warning", msg % args))

    def exception(self, msg, *args):
        self.lines.append(("exception", msg % args))


class FakeDB:
    def __init__(self):
        self.commits = 0

    def commit(self):
        self.commits += 1


class FakeUser:
    def __init__(self, name, admin=False):
        self.name = name
        self.admin = admin
        self.db = FakeDB()


class FakeSpawner:
    def __init__(self, user, admins=()):
        self.user = user
        self.log = FakeLog()
        self.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}]
        self.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
        self.mem_limit = 2 * GI
        self.mem_guarantee = None
        self.authenticator = type("Auth", (), {"admin_users": set(admins)})()


class FakeSection(dict):
    def __getattr__(self, name):
        return self[name]

    def __setattr__(self, name, value):
        self[name] = value


class FakeConfig:
    def __init__(self):
        self.KubeSpawner = FakeSection()
        self.Spawner = FakeSection()


class GlueTest(CourseFixture):
    def run_hook(self, hook, spawner):
        asyncio.run(hook(spawner))

    def test_repeated_spawns_start_from_the_configured_base(self):
        spawner = FakeSpawner(FakeUser("gsi0001"))
        hook = rp.make_pre_spawn_hook(PROFILES, self.dir)
        self.run_hook(hook, spawner)
        self.run_hook(hook, spawner)  # second spawn: nothing accumulates
        self.assertEqual([v["name"] for v in spawner.volumes], ["home", "datasets"])
        self.assertEqual(len(spawner.volume_mounts), 3)
        self.assertEqual(spawner.mem_limit, 6 * GI)
        # gsi0001 leaves both courses: the course extras are gone at the next spawn
        self.write("2030-fall-11111", "instructors")
        self.write("2030-fall-22222", "students")
        self.run_hook(hook, spawner)
        self.assertEqual([v["name"] for v in spawner.volumes], ["home"])
        self.assertEqual(spawner.mem_limit, 2 * GI)

    def test_admin_flag_updated_and_committed(self):
        instructor0002 = FakeUser("instructor0002", admin=False)
        self.run_hook(rp.make_pre_spawn_hook(PROFILES, self.dir), FakeSpawner(instructor0002))
        self.assertIs(instructor0002.admin, True)
        self.assertEqual(instructor0002.db.commits, 1)
        student0001 = FakeUser("student0001", admin=True)
        self.run_hook(rp.make_pre_spawn_hook(PROFILES, self.dir), FakeSpawner(student0001))
        self.assertIs(student0001.admin, False)

    def test_configured_admin_users_are_not_demoted(self):
        student0001 = FakeUser("student0001", admin=True)
        self.run_hook(rp.make_pre_spawn_hook(PROFILES, self.dir), FakeSpawner(student0001, admins={"Student0001"}))
        self.assertIs(student0001.admin, True)
        self.assertEqual(student0001.db.commits, 0)

    def test_install_chains_an_existing_hook(self):
        calls = []
        c = FakeConfig()
        c.KubeSpawner.pre_spawn_hook = lambda spawner: calls.append(spawner.user.name)
        rp.install(c, PROFILES, self.dir)
        spawner = FakeSpawner(FakeUser("student0002"))
        self.run_hook(c.KubeSpawner.pre_spawn_hook, spawner)
        self.assertEqual(calls, ["student0002"])
        self.assertEqual(spawner.mem_limit, 4 * GI)

    def test_install_chains_a_hook_set_on_spawner(self):
        calls = []
        c = FakeConfig()
        c.Spawner.pre_spawn_hook = lambda spawner: calls.append(spawner.user.name)
        rp.install(c, PROFILES, self.dir)
        self.run_hook(c.KubeSpawner.pre_spawn_hook, FakeSpawner(FakeUser("student0002")))
        self.assertEqual(calls, ["student0002"])

    def test_install_without_existing_hook(self):
        c = FakeConfig()
        rp.install(c, None, self.dir)
        spawner = FakeSpawner(FakeUser("student0002"))
        self.run_hook(c.KubeSpawner.pre_spawn_hook, spawner)
        self.assertEqual(spawner.mem_limit, 2 * GI)


if __name__ == "__main__":
    unittest.main()
