"""audiobox.stagecache: the one "reuse the cached stage or compute and write it" rule."""

from __future__ import annotations

import json

from audiobox.stagecache import cached_json


def test_cached_json_reuses_refreshes_and_recomputes_stale(tmp_path):
    path = tmp_path / "stage" / "result.json"
    calls = []

    def make():
        calls.append(1)
        return {"version": 2, "n": len(calls)}

    def current(data):
        return data.get("version") == 2

    assert cached_json(path, refresh=False, make=make, valid=current) == ({"version": 2, "n": 1}, False)
    assert cached_json(path, refresh=False, make=make, valid=current) == ({"version": 2, "n": 1}, True)
    assert cached_json(path, refresh=True, make=make, valid=current) == ({"version": 2, "n": 2}, False)
    path.write_text(json.dumps({"version": 1}))  # an older layout: computed again, and rewritten
    assert cached_json(path, refresh=False, make=make, valid=current)[0]["n"] == 3
    path.write_text("{truncated")  # a damaged file is never trusted
    assert cached_json(path, refresh=False, make=make, valid=current) == ({"version": 2, "n": 4}, False)
    assert json.loads(path.read_text())["n"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp files left
