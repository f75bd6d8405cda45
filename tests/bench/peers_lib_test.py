#!/usr/bin/env python3
"""bench/peers/lib.py's sync counting on canned `perf script` text (the
format perf 6.x prints for -F comm,pid,time,event,trace) and strace tables:
which calls count (the side's processes, what they fork, the window only),
the idle median, the names. Nothing runs; no perf or root needed."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bench", "peers"))
import lib  # noqa: E402

SCRIPT = """\
        postgres   100   99.900000:  syscalls:sys_enter_fdatasync: fd: 0x00000005
        postgres   100  100.100000:  syscalls:sys_enter_fdatasync: fd: 0x00000005
        postgres   100  100.200000:     sched:sched_process_fork: comm=postgres pid=100 child_comm=postgres child_pid=300
        postgres   300  100.300000:  syscalls:sys_enter_fdatasync: fd: 0x00000007
        postgres   300  100.400000:      syscalls:sys_enter_fsync: fd: 0x00000007
         unrelat   200  100.500000:      syscalls:sys_enter_fsync: fd: 0x00000003
         unrelat   200  100.550000:     sched:sched_process_fork: comm=unrelat pid=200 child_comm=unrelat child_pid=400
         unrelat   400  100.600000:      syscalls:sys_enter_fsync: fd: 0x00000003
     data-plane   101  101.200000: syscalls:sys_enter_sync_file_range: fd: 0x00000009, offset: 0x0
     data-plane   101  101.300000: syscalls:sys_enter_sync_file_range: fd: 0x00000009, offset: 0x0
     data-plane   101  102.100000: syscalls:sys_enter_sync_file_range: fd: 0x00000009, offset: 0x0
 audit gather   102  102.500000:  syscalls:sys_enter_fdatasync: fd: 0x00000004
 audit gather   102  103.900000:  syscalls:sys_enter_fdatasync: fd: 0x00000004
        postgres   100  104.100000:  syscalls:sys_enter_fdatasync: fd: 0x00000005
a line perf adds that is not an event
""".splitlines()


class CountSyncs(unittest.TestCase):
    def test_window_pids_and_forks(self):
        n, median, by = lib.count_syncs(SCRIPT, {100, 101, 102}, 100.0, 104.0)
        # 99.9 and 104.1 are outside; pid 200 and its child 400 are not ours;
        # the backend 300 forked by 100 is
        self.assertEqual(n, 8)
        self.assertEqual(by, {"postgres": 3, "data-plane": 3, "audit_gather": 2})

    def test_median_of_whole_seconds(self):
        # seconds [100,101): 3, [101,102): 2, [102,103): 2, [103,104): 1
        _, median, _ = lib.count_syncs(SCRIPT, {100, 101, 102}, 100.0, 104.0)
        self.assertEqual(median, 2)
        _, median, _ = lib.count_syncs(SCRIPT, {100}, 100.0, 100.5)
        self.assertIsNone(median)

    def test_fork_outside_the_side_is_not_followed(self):
        n, _, by = lib.count_syncs(SCRIPT, {200}, 100.0, 104.0)
        self.assertEqual((n, by), (2, {"unrelat": 2}))

    def test_fork_is_followed_even_before_the_window(self):
        # the backend forked at 100.2 syncs at 100.3 and 100.4: a window
        # from 100.25 counts its calls though the fork is outside it
        n, _, by = lib.count_syncs(SCRIPT, {100}, 100.25, 101.0)
        self.assertEqual((n, by), (2, {"postgres": 2}))

    def test_nothing_of_ours(self):
        self.assertEqual(lib.count_syncs(SCRIPT, {999}, 0, 1000), (0, 0, {}))


class Syncs(unittest.TestCase):
    def test_perf_and_strace_files(self):
        with tempfile.TemporaryDirectory() as d:
            a = os.path.join(d, "perf")
            with open(a, "w") as f:
                f.write("syncs 41\nmedian_per_s 6\nby postgres 41\n")
            b = os.path.join(d, "strace")
            with open(b, "w") as f:
                f.write("% time     seconds  usecs/call     calls    errors syscall\n"
                        "------ ----------- ----------- --------- --------- ----------------\n"
                        " 61.10    0.001000          10       100           fdatasync\n"
                        " 20.00    0.000500           5         7           fsync\n"
                        " 10.00    0.000200           2         3           sync_file_range\n"
                        "  8.90    0.000100           1        50         2 futex\n"
                        "------ ----------- ----------- --------- --------- ----------------\n"
                        "100.00    0.001800                   160         2 total\n")
            self.assertEqual(lib.syncs([a]), 41)
            self.assertEqual(lib.syncs([b]), 110)
            self.assertEqual(lib.syncs([a, b]), 151)


if __name__ == "__main__":
    unittest.main(verbosity=2)
