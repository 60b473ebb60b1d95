"""runtime/change_log.py: one owner per server directory, handed on when it goes; marks written by
one process are seen by the others of the same server only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway_server.runtime.change_log import ChangeLog, content_token, version_token


def test_one_owner_per_directory_and_the_lock_is_handed_on(tmp_path: Path) -> None:
    first, second = ChangeLog(str(tmp_path)), ChangeLog(str(tmp_path))
    assert first.owner() and first.owner()  # kept
    assert not second.owner()
    first.close()  # the owner went away: the next one to ask takes it
    assert second.owner()
    assert not ChangeLog(str(tmp_path)).owner()
    second.close()
    first.close()  # twice is harmless


def test_the_owner_lock_is_per_process_and_dies_with_it(tmp_path: Path) -> None:
    script = (
        "import sys; from gateway_server.runtime.change_log import ChangeLog; "
        f"assert ChangeLog({str(tmp_path)!r}).owner(); print('owner', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "owner\n"
            assert not ChangeLog(str(tmp_path)).owner()
        finally:
            holder.kill()
    after = ChangeLog(str(tmp_path))
    assert after.owner()  # a worker that died left the lines to the others
    after.close()


def test_marks_are_shared_by_the_processes_of_one_server_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    maker, sibling, other = (ChangeLog(str(tmp_path / d)) for d in ("a", "a", "b"))
    token = content_token("routes: []\n")
    assert token == content_token(b"routes: []\n") and token.startswith("sha256:")
    assert not sibling.marked(token)
    maker.mark(token)
    assert maker.marked(token) and sibling.marked(token)
    assert not other.marked(token) and not sibling.marked(None)
    for version in range(1, 200):  # only recent marks count (the journal is read from its tail)
        maker.mark(version_token(version))
    assert sibling.marked(version_token(199)) and not sibling.marked(version_token(2))


def test_one_process_marks_in_memory_and_owns_everything() -> None:
    alone = ChangeLog(None)
    assert alone.owner()
    alone.mark("shared:3")
    assert alone.marked("shared:3") and not alone.marked("shared:4")


def test_a_missing_directory_logs_rather_than_loses_lines(tmp_path: Path) -> None:
    gone = ChangeLog(str(tmp_path / "gone"))
    assert gone.owner()
    gone.mark("shared:1")  # no error
    assert gone.marked("shared:1")
