"""Tests for roster_profiles' pure functions (standard library only).

The hooks and everything that touches JupyterHub are tested against the real software in
test_hub_integration.py. Run both from the repository root:  bash .ci/hub-tests.sh
All names and addresses are made up.
"""

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


class RostersTest(RosterDirTest):
    def members(self, key, kind, roster_dir=None, domain=rp.DEFAULT_USERNAME_DOMAIN, warnings=None):
        rosters = rp.Rosters(roster_dir or self.dir, domain)
        return rosters.members(key, kind, [] if warnings is None else warnings)

    def test_missing_file_is_empty(self):
        self.assertEqual(self.members("2030-fall-12345", "students"), frozenset())
        self.assertEqual(self.members("2030-fall-12345", "students", roster_dir="/nonexistent/dir"), frozenset())

    def test_reads_file(self):
        self.write("2030-fall-12345", "instructors", "Instructor0009@berkeley.edu", "instructor0009@example.org")
        self.assertEqual(self.members("2030-fall-12345", "instructors"), {"instructor0009"})

    def test_other_domain_and_whole_address(self):
        self.write("2030-fall-12345", "students", "student0001@example.edu", "student0002@berkeley.edu")
        self.assertEqual(self.members("2030-fall-12345", "students", domain="example.edu"), {"student0001"})
        self.assertEqual(
            self.members("2030-fall-12345", "students", domain=""),
            {"student0001@example.edu", "student0002@berkeley.edu"},
        )

    def test_only_course_keys_have_rosters(self):
        outside = tempfile.NamedTemporaryFile("w", suffix="-students.txt", delete=False)
        try:
            outside.write("student0001@berkeley.edu\n")
            outside.close()
            key = "../" + os.path.basename(outside.name)[: -len("-students.txt")]
            self.assertEqual(self.members(key, "students"), frozenset())
        finally:
            os.unlink(outside.name)

    def test_unreadable_path_is_empty_with_warning(self):
        os.mkdir(os.path.join(self.dir, "2030-fall-12345-students.txt"))  # a directory, not a file
        warnings = []
        self.assertEqual(self.members("2030-fall-12345", "students", warnings=warnings), frozenset())
        self.assertEqual(len(warnings), 1)

    def test_cache_sees_a_replaced_file(self):
        rosters = rp.Rosters(self.dir)
        self.write("2030-fall-12345", "students", "student0001@berkeley.edu")
        self.assertEqual(rosters.members("2030-fall-12345", "students", []), {"student0001"})
        self.write("2030-fall-12345", "students", "student0002@berkeley.edu", "student0003@berkeley.edu")
        self.assertEqual(rosters.members("2030-fall-12345", "students", []), {"student0002", "student0003"})

    def test_missing_directory_reported_once_and_its_return(self):
        rosters = rp.Rosters(os.path.join(self.dir, "later"))
        self.assertEqual(rosters.check_directory()[0], "warning")
        self.assertIsNone(rosters.check_directory())
        os.mkdir(os.path.join(self.dir, "later"))
        self.assertEqual(rosters.check_directory()[0], "info")
        self.assertIsNone(rosters.check_directory())


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

    def test_dict_form_is_kept(self):
        merged = rp.merge_unique({"b": {"name": "v2"}, "a": {"name": "v1"}}, [{"name": "v1"}, {"name": "v3"}], "name", "p", [])
        self.assertEqual(merged, {"a": {"name": "v1"}, "b": {"name": "v2"}, "roster-p-1": {"name": "v3"}})


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

    def eval(self, username, profiles=PROFILES):
        return rp.evaluate(profiles, rp.Rosters(self.dir), username)


BASE = {"volumes": [], "volume_mounts": [], "mem_limit": None, "mem_guarantee": None}


class EvaluateTest(CourseFixture):
    def test_case_insensitive_match(self):
        for name in ("student0001", "STUDENT0001", "Student0001", "student0001@berkeley.edu"):
            with self.subTest(name=name):
                self.assertIn("2030-fall-11111", self.eval(name)["matched"])
        # gsi0001 is listed as Gsi0001@Berkeley.edu in course 22222
        self.assertEqual(self.eval("gsi0001")["matched"], ["2030-fall-11111", "2030-fall-22222"])

    def test_non_member_gets_nothing(self):
        result = self.eval("student0003")  # only listed with a non-berkeley address
        self.assertEqual(result, {"matched": [], "student_of": [], "instructor_of": [], "warnings": []})

    def test_roles_per_course(self):
        result = self.eval("student0001")
        self.assertEqual(result["student_of"], ["2030-fall-11111"])
        self.assertEqual(result["instructor_of"], ["2030-fall-22222"])
        # a profile with no settings (None) still counts its instructors
        self.assertEqual(self.eval("instructor0003")["instructor_of"], ["2030-fall-33333"])

    def test_users_list_profiles(self):
        lead0001 = self.eval("LEAD0001")
        self.assertEqual(lead0001["matched"], ["module-leads"])
        self.assertEqual(lead0001["instructor_of"], [])  # a users: list is no roster
        # a single string is accepted as a one-element list
        self.assertEqual(self.eval("lead0002", {"x": {"users": "Lead0002"}})["matched"], ["x"])

    def test_not_a_mapping_is_skipped_with_warning(self):
        result = self.eval("student0001", {"2030-fall-11111": ["oops"]})
        self.assertEqual(result["matched"], [])
        self.assertEqual(len(result["warnings"]), 1)


class ApplyProfilesTest(CourseFixture):
    def apply(self, username, state=BASE, profiles=PROFILES):
        warnings = []
        keys = self.eval(username, profiles)["matched"]
        return rp.apply_profiles(dict(state), profiles, keys, warnings), warnings

    def test_no_cumulative_flags(self):
        # student0002 matches the first course only; later profiles must not apply to him
        state, _ = self.apply("student0002", dict(BASE, volumes=[{"name": "home"}]))
        self.assertEqual([v["name"] for v in state["volumes"]], ["home"])
        self.assertEqual(state["mem_limit"], 4 * GI)

    def test_memory_max_across_units_and_base(self):
        state, _ = self.apply("gsi0001", dict(BASE, mem_limit=2 * GI, mem_guarantee="256M"))
        self.assertEqual(state["mem_limit"], 6 * GI)  # max(2G, 4G, 6144Mi)
        self.assertEqual(state["mem_guarantee"], 1 * GI)  # max(256M, 1Gi, 512M)
        state, _ = self.apply("gsi0001", dict(BASE, mem_limit="10Gi"))
        self.assertEqual(state["mem_limit"], 10 * GI)

    def test_unset_memory_everywhere_stays_unset(self):
        self.write("2030-fall-33333", "students", "student0004@berkeley.edu")
        state, _ = self.apply("student0004")
        self.assertIsNone(state["mem_limit"])
        self.assertIsNone(state["mem_guarantee"])

    def test_invalid_memory_is_skipped_with_warning(self):
        warnings = []
        limit, guarantee = rp.merge_memory("4G", None, {"mem_limit": "lots", "mem_guarantee": "2G"}, "p", warnings)
        self.assertEqual((limit, guarantee), (4 * GI, 2 * GI))
        self.assertEqual(len(warnings), 1)

    def test_guarantee_above_limit_raises_limit(self):
        self.assertEqual(rp.merge_memory("2G", "1G", {"mem_guarantee": "4G"}, "p", []), (4 * GI, 4 * GI))
        # an unset limit stays unset: there is nothing to exceed
        self.assertEqual(rp.merge_memory(None, None, {"mem_guarantee": "4G"}, "p", []), (None, 4 * GI))

    def test_mounts_and_volumes_deduplicated(self):
        base = dict(
            BASE,
            volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "home-nfs"}}],
            volume_mounts=[{"name": "home", "mountPath": "/home/jovyan", "subPath": "home/{username}"}],
        )
        # gsi0001 matches both courses, which share a mount
        state, warnings = self.apply("gsi0001", base)
        self.assertEqual([v["name"] for v in state["volumes"]], ["home", "datasets"])
        paths = [m["mountPath"] for m in state["volume_mounts"]]
        self.assertEqual(paths, ["/home/jovyan", "/home/jovyan/shared", "/srv/datasets"])
        self.assertEqual(warnings, [])

    def test_dict_form_stays_a_dict(self):
        base = dict(
            BASE,
            volumes={"home": {"name": "home"}},
            volume_mounts={"home": {"name": "home", "mountPath": "/home/jovyan"}},
        )
        state, _ = self.apply("gsi0001", base)
        self.assertIsInstance(state["volumes"], dict)
        self.assertEqual(state["volumes"]["home"], {"name": "home"})
        self.assertEqual(sorted(v["name"] for v in state["volumes"].values()), ["datasets", "home"])
        self.assertEqual(len(state["volume_mounts"]), 3)
        self.assertEqual(base["volumes"], {"home": {"name": "home"}})  # input untouched

    def test_mount_without_its_volume_is_dropped(self):
        # no "home" volume in the base (z2jh's dynamic storage names it volume-{user_server})
        state, warnings = self.apply("student0002", dict(BASE, volumes={"v": {"name": "volume-{user_server}"}}))
        self.assertEqual(state["volume_mounts"], [])
        self.assertEqual(len(warnings), 1)

    def test_empty_profiles(self):
        for profiles in (None, {}):
            self.assertEqual(rp.evaluate(profiles, rp.Rosters(self.dir), "student0001")["matched"], [])


class GroupNameTest(unittest.TestCase):
    def test_default_template(self):
        self.assertEqual(rp.group_name("2030-fall-11111", "students"), "course::2030-fall-11111::students")
        self.assertEqual(rp.group_name("2030-fall-11111", "instructors", "{key}-{list}"), "2030-fall-11111-instructors")

    def test_course_keys(self):
        self.assertTrue(rp.is_course_key("2030-fall-012345"))
        self.assertTrue(rp.is_course_key("canvas-1234567"))
        for key in ("astr-128-admins", "2030-winter-1", "2030-fall-1234567", "canvas-", "canvas-12x", None):
            with self.subTest(key=key):
                self.assertFalse(rp.is_course_key(key))


if __name__ == "__main__":
    unittest.main()
