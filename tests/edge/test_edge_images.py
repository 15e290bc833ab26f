"""Photos as a camera takes them: `classify` resizes the short side and centre-crops to the model's
input on the client, takes several files or a folder (one line each), and --no-resize keeps the
gateway's strict check of the size on the wire."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from edge_support import edge_env, reference

Image = pytest.importorskip("PIL.Image")

from nonn.edge.client import GatewayClient  # noqa: E402
from nonn.edge.images import fit  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, "-m", "nonn.edge", "classify", *args], capture_output=True, text=True,
                          check=False, timeout=60, env=edge_env())


def expected_label(artifacts, path) -> int:
    """The label the models give, run straight in ONNX Runtime, on the same resized pixels."""
    with Image.open(path) as img:
        pixels = fit(img, 3, 8, 8)
    return int(np.argmax(reference(artifacts, pixels)))


@pytest.fixture
def gateway(processes, shared_nodes, artifacts):
    _, address = processes.start("gateway", "--manifest", str(artifacts.manifest), "--nodes", ",".join(shared_nodes),
                                 "--listen", "127.0.0.1:0", "--insecure", "--deadline-ms", "3000")
    return address


def test_fit_covers_then_crops_the_centre():
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # only the centre third is white
    out = fit(Image.fromarray(wide), 3, 5, 5)
    assert out.shape == (5, 5, 3) and out.dtype == np.uint8 and out.min() > 200  # the crop kept the centre
    gray = fit(Image.fromarray(np.full((9, 7), 77, np.uint8)), 1, 4, 4)
    assert gray.shape == (4, 4, 1) and (gray == 77).all()
    rgb = fit(Image.fromarray(np.full((6, 6), 77, np.uint8)), 3, 6, 6)
    assert rgb.shape == (6, 6, 3) and (rgb == 77).all()


def test_a_jpeg_and_a_folder_of_pngs_one_line_each(gateway, artifacts, tmp_path):
    rng = np.random.default_rng(11)
    jpeg = tmp_path / "camera.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, quality=90)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(4):
        pixels = rng.integers(0, 256, (20, 13, 3) if i % 2 else (13, 20), dtype=np.uint8)  # RGB and grayscale
        Image.fromarray(pixels).save(folder / f"img_{i}.png")
    (folder / "notes.txt").write_text("not an image")

    one = run("--gateway", gateway, str(jpeg), "--insecure")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == [one.stdout.strip()] and one.stdout.startswith(
        f"label {expected_label(artifacts, jpeg)} ")

    many = run("--gateway", gateway, str(folder), str(jpeg), "--insecure")
    assert many.returncode == 0, many.stderr
    files = sorted(folder.glob("*.png")) + [jpeg]
    lines = many.stdout.splitlines()
    assert len(lines) == len(files)
    for line, path in zip(lines, files):
        assert line.startswith(f"{path}: label {expected_label(artifacts, path)} "), line

    as_json = run("--gateway", gateway, str(folder), "--insecure", "--json")
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(p) for p in sorted(folder.glob("*.png"))]
    assert [r["label"] for r in records] == [expected_label(artifacts, p) for p in sorted(folder.glob("*.png"))]

    with GatewayClient(gateway, insecure=True) as client:  # the Python client resizes too
        assert client.classify(jpeg)["label"] == expected_label(artifacts, jpeg)
        assert client.input_shape() == (3, 8, 8)


def test_no_resize_keeps_the_strict_check(gateway, tmp_path):
    jpeg = tmp_path / "camera.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(jpeg)
    strict = run("--gateway", gateway, str(jpeg), "--insecure", "--no-resize")
    assert strict.returncode == 2 and strict.stderr.startswith("error: INVALID_ARGUMENT")
    assert "expected an image of 8x8 pixels" in strict.stderr and strict.stderr.count("\n") == 1
    raw = np.zeros((64, 64, 3), np.uint8)  # a raw array is never resized: the same clear error
    np.save(tmp_path / "raw.npy", raw)
    assert "expected an image of 8x8 pixels" in run("--gateway", gateway, str(tmp_path / "raw.npy"), "--insecure").stderr


def test_a_folder_with_a_broken_image_reports_it_on_its_line(gateway, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    result = run("--gateway", gateway, str(folder), "--insecure")
    lines = result.stdout.splitlines()
    assert result.returncode == 2 and len(lines) == 2
    assert lines[0].startswith(f"{folder / 'a.png'}: label ") and lines[1].startswith(f"{folder / 'b.png'}: error: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("--gateway", gateway, str(empty), "--insecure")
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1 and "holds no" in nothing.stderr
