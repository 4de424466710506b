"""Code sync when the editor writes a file again while the sync runs."""

from __future__ import annotations

from slipstream.sync import sync_project


def test_a_file_rewritten_mid_sync_is_synced_with_its_new_content(runtime, project_factory):
    proj = project_factory(runtime, {"app.py": "from slipstream import endpoint\n\n@endpoint\ndef v():\n    return 1\n"})
    client = runtime.client()
    real_missing = client.missing
    rewritten = []

    def missing(files):
        if not rewritten:  # a formatter saves the file after it was hashed, before its upload
            rewritten.append(True)
            proj.write("app.py", "from slipstream import endpoint\n\n@endpoint\ndef v():\n    return 2\n")
        return real_missing(files)

    client.missing = missing
    res = sync_project(client, proj.root)
    assert rewritten and res.generation
    assert client.call_json("v")["result"] == 2
