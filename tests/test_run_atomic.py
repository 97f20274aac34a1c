"""cadence._atomic: what an atomic write leaves, replaces and refuses."""

import os

import pytest

from cadence._atomic import atomic_write, kill_point, refuse_existing, stable_temp
from cadence.errors import ExistsError


def test_a_fixed_temporary_name_replaces_its_own_stale_file_and_never_writes_through_a_link(tmp_path):
    target = tmp_path / "state.json"
    temp = stable_temp(target)
    assert temp.name == ".state.json.cadence-tmp"
    temp.write_text("left by a killed write")
    atomic_write(target, lambda tmp: open(tmp, "w").write("new"), temp=temp)
    assert target.read_text() == "new" and not temp.exists()

    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    temp.symlink_to(precious)  # whoever made it, the write must not go through it
    atomic_write(target, lambda tmp: open(tmp, "w").write("newer"), temp=temp)
    assert precious.read_text() == "mine" and target.read_text() == "newer" and not os.path.lexists(temp)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")

    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk on fire")

    for temp in (None, stable_temp(target)):
        with pytest.raises(RuntimeError):
            atomic_write(target, boom, temp=temp)
        assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_refuse_existing(tmp_path):
    mine = tmp_path / "mine.png"
    mine.write_text("x")
    with pytest.raises(ExistsError) as e:
        refuse_existing(mine, overwrite=False)
    assert e.value.field == "overwrite"
    assert refuse_existing(mine, overwrite=True) == mine
    dangling = tmp_path / "link.png"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ExistsError):  # a link is the user's, even when it points nowhere
        refuse_existing(dangling, overwrite=False)
    long = tmp_path / ("x" * 300 + ".json")  # the OS cannot stat it: not there (writing it will say why)
    assert refuse_existing(long, overwrite=False) == long


def test_kill_point_ignores_other_points(monkeypatch):
    monkeypatch.setenv("CADENCE_KILL_AT", "rename:other.json:1")
    kill_point("rename:state.json")  # another point: nothing happens (test_kill.py kills for real)
    monkeypatch.setenv("CADENCE_KILL_AT", "garbage")
    kill_point("garbage")
    monkeypatch.delenv("CADENCE_KILL_AT")
    kill_point("row")
