"""Security: servers on loopback only, no code path that unpickles or evaluates untrusted data,
nothing escapes the storage root, and no export carries a training image."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gan_core.export import CopyScreen, ExportError, ExportPlan, export_samples, read_export
from gan_core.sample import generate

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gan_core", "pipelines", "benchmarks")


# ---------------------------------------------------------------- unsafe loading


def unsafe_calls(source: str, filename: str = "<string>") -> list[str]:
    """What ruff's security rules (`S`, run by `make lint`: pickle and its wrappers, yaml.load,
    eval, exec) cannot see: torch.load without weights_only=True, numpy loads with
    allow_pickle=True, yaml's full and unsafe loaders, compile and __import__."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        where = f"{filename}:{node.lineno}: {name}"
        if name == "torch.load" and keywords.get("weights_only") != "True":
            found.append(where + " without weights_only=True")
        elif name in ("np.load", "numpy.load") and keywords.get("allow_pickle") == "True":
            found.append(where + " with allow_pickle=True")
        elif name in ("yaml.unsafe_load", "yaml.full_load", "compile", "__import__"):
            found.append(where)
    return found


def test_the_scanner_finds_each_unsafe_pattern():
    planted = "\n".join(["torch.load(p)", "torch.load(p, weights_only=False)", "np.load(p, allow_pickle=True)", "yaml.full_load(s)", "compile(s, 'x', 'exec')"])
    assert len(unsafe_calls(planted)) == 5
    assert unsafe_calls("torch.load(p, weights_only=True)\nyaml.safe_load(s)\nmodel.eval()\nnp.load(p, allow_pickle=False)") == []


def test_no_code_path_unpickles_or_evaluates_untrusted_data():
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 20
    found = [hit for path in files for hit in unsafe_calls(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []
    # The rest is ruff's: its security rules are selected and pass on the same files.
    assert '"S"' in (ROOT / "pyproject.toml").read_text().split("[tool.ruff.lint]")[1].split("\n[")[0]
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *PACKAGES], cwd=ROOT, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


# ---------------------------------------------------------------- servers


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                pids.append(int(entry.name))
    return pids


def _listening_sockets(pids: list[int]) -> list[tuple[str, int]]:
    """(local address, port) of every listening TCP socket that these processes hold."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    listening = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address_hex, port_hex = local.split(":")
                raw = bytes.fromhex(address_hex)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                listening.append((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return listening


def test_make_ui_listens_on_loopback_only(tmp_path, free_port):
    ui_port, mlflow_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GANPIPE_", "DAGSTER_", "MLFLOW_"))}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"HOME_DIR={tmp_path}", f"UI_PORT={ui_port}", f"MLFLOW_PORT={mlflow_port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        sockets: list[tuple[str, int]] = []
        while time.monotonic() < deadline:
            sockets = _listening_sockets(_session_pids(process.pid))
            if {ui_port, mlflow_port} <= {port for _, port in sockets}:
                break
            assert process.poll() is None, "make ui exited early"
            time.sleep(1)
        else:
            pytest.fail(f"make ui did not listen on {ui_port} and {mlflow_port} within 180 s (listening: {sockets})")
        time.sleep(3)  # let the daemon and code servers come up too
        sockets = _listening_sockets(_session_pids(process.pid))
        assert {ui_port, mlflow_port} <= {port for _, port in sockets}
        exposed = [(address, port) for address, port in sockets if address not in ("127.0.0.1", "::1")]
        assert exposed == [], f"listening beyond loopback: {exposed}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------- storage root


def test_export_destinations_cannot_escape_the_root(tmp_path, tiny_generator, tiny_plan):
    root = tmp_path / "root"
    (root / "exports").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "exports" / "link").symlink_to(outside)
    for destination in (root / ".." / "outside" / "e", root / "exports" / "link" / "e", outside / "e", Path("/etc/ganpipe-e")):
        with pytest.raises(ExportError, match="outside the storage root"):
            export_samples(tiny_generator(), tiny_plan(), destination, root=root)
    assert list(outside.iterdir()) == [] and not (root / "staging").exists()


# ---------------------------------------------------------------- no training images in exports


def test_an_export_holding_exact_copies_of_training_images_is_refused(tmp_path, tiny_generator, tiny_plan, lineage):
    generator = tiny_generator()
    plan = tiny_plan()
    # Training images that the generator reproduces exactly: samples 3 and 40 of this very plan.
    copies = generate(generator, plan.labels_for(0, 75), seeds=plan.seeds_for(0, 75))[[3, 40]]
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.integers(0, 256, (50, 1, 8, 8), dtype=np.uint8), copies])
    destination = tmp_path / "exports" / "leaky"
    with pytest.raises(ExportError, match="2 exported image\\(s\\) are exact copies of training images"):
        export_samples(generator, plan, destination, lineage=lineage, root=tmp_path, screen=CopyScreen(train, threshold=1.0))
    assert not destination.exists() and not list((tmp_path / "staging").iterdir())


def test_every_screened_export_records_its_copy_figures(tmp_path, tiny_generator, tiny_plan):
    generator = tiny_generator()
    plan = ExportPlan.per_class(tiny_plan().class_names, 20, seed=3, rows_per_part=25)
    train = np.random.default_rng(1).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    destination = tmp_path / "exports" / "clean"
    export_samples(generator, plan, destination, root=tmp_path, screen=CopyScreen(train, threshold=1.0))
    assert read_export(destination).num_rows == 60
    manifest = json.loads((destination / "_manifest.json").read_text())
    screened = manifest["memorization"]
    assert screened["checked"] == 60 and screened["exact_copies"] == 0 and screened["reference_images"] == 40
    # A near-copy limit the export cannot meet refuses it too.
    strict = CopyScreen(train, threshold=1e9, max_near_copy_fraction=0.5)
    with pytest.raises(ExportError, match="near-copy fraction 1.0000 is above the allowed 0.5"):
        export_samples(generator, plan, tmp_path / "exports" / "strict", root=tmp_path, screen=strict)
