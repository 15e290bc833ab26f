"""Two-process DDP on CPU (gloo) through configuration alone gives the same kind of run as one process."""

import json

import torch
from nonn_test_support import run_cli, tiny_args


def test_two_process_ddp_on_cpu(tmp_path, tiny_run):
    out = tmp_path / "ddp"
    proc = run_cli("run", "--dataset", "digits", "--k", "2", "--out", str(out),
                   *tiny_args("trainer.devices=2", "trainer.strategy=ddp"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("teacher.pt", "students.pt"):
        ddp = torch.load(out / name, weights_only=True)
        single = torch.load(tiny_run / name, weights_only=True)
        assert ddp["world_size"] == 2 and single["world_size"] == 1
        assert {k: v.shape for k, v in ddp["state_dict"].items()} == {
            k: v.shape for k, v in single["state_dict"].items()}
        assert 0.0 <= ddp["val_acc"] <= 1.0
    m_ddp = json.loads((out / "metrics.json").read_text())
    m_one = json.loads((tiny_run / "metrics.json").read_text())
    assert m_ddp["teacher"]["params"] == m_one["teacher"]["params"]
    assert [s["filters"] for s in m_ddp["nonn"]["students"]] and m_ddp["k"] == m_one["k"] == 2
    assert sum(s["filters"] for s in m_ddp["nonn"]["students"]) == 128
