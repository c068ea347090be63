"""The tree of a real process and its children, including one that exits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from monitor_children import MIB, MemoryChild

from yoyu.monitor.process_tree import ProcessTree, children_map, descendants


def test_descendants_walks_each_pid_once_in_breadth_first_order() -> None:
    parent_of = {1: None, 10: 1, 11: 10, 12: 10, 13: 11, 99: 1}
    children = children_map(parent_of)
    assert descendants([10], lambda pid: children.get(pid, ())) == (10, 11, 12, 13)
    assert descendants([10, 11], lambda pid: children.get(pid, ())) == (10, 11, 12, 13)


@pytest.mark.parametrize("use_children_files", [True, False], ids=["children-files", "ppid-scan"])
def test_tree_sums_children_and_survives_one_exiting(
    make_child: Callable[[int], MemoryChild], use_children_files: bool
) -> None:
    parent = make_child(32)
    first, second = parent.spawn_child(), parent.spawn_child()
    now = [0.0]
    tree = ProcessTree(refresh_s=60.0, clock=lambda: now[0], use_children_files=use_children_files)

    both = tree.read([parent.pid])
    assert set(both.pids) == {parent.pid, first, second}
    assert both.anon_bytes is not None and both.anon_bytes >= 2 * 32 * MIB

    parent.end_oldest_child()  # membership is cached (refresh_s=60): the read meets a dead pid
    after_exit = tree.read([parent.pid])
    assert set(after_exit.pids) == {parent.pid, second}
    assert after_exit.anon_bytes is not None
    assert both.anon_bytes - after_exit.anon_bytes >= 30 * MIB  # the child held 32 MiB


def test_a_root_that_is_gone_reads_as_an_empty_tree(
    make_child: Callable[[int], MemoryChild],
) -> None:
    child = make_child(1)
    pid = child.pid
    child.quit()
    sample = ProcessTree().read([pid])
    assert (sample.pids, sample.rss_bytes) == ((), 0)
