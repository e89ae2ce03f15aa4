"""Benchmark helpers: the FLOP model of a pair, and a small throughput run that checks the two paths agree."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from retrieval.benchmarks.throughput import ames_flops, ames_throughput, grid_cost
from retrieval.methods.ames.infer import fast_dtype
from retrieval.methods.ames.model import AmesConfig


def test_flop_count_by_hand():
    cfg = AmesConfig(local_dim=8, model_dim=4, nhead=2, num_layers=1, dim_feedforward=8)
    n_q, n_t = 2, 3
    length = 6
    linear = 2 * length * 4 * 12 * 2 + 2 * length * 4 * 4 * 2 + length * 4 * 8 * 4
    useful = (length + 2 * 3 + 3 * 4) + (length + 2 * 4 + 3 * 3)  # self + cross attention entries
    assert ames_flops(n_q, n_t, cfg, masked=False) == linear + useful * 16 + 8
    assert ames_flops(n_q, n_t, cfg, masked=True) == linear + 2 * length * length * 16 + 8
    big = AmesConfig()
    # the block form saves about half the attention at 600/600
    assert ames_flops(600, 600, big, masked=True) / ames_flops(600, 600, big, masked=False) == pytest.approx(
        1.44, abs=0.02
    )


def test_small_throughput_run_agrees_with_reference():
    out = ames_throughput([[8, 12]], local_dim=16, batch=2, repeats=1, device="cpu")
    row = out["sizes"][0]
    assert row["fast_pairs_per_s"] > 0 and out["gemm_peak_gflops"] > 0 and row["reference_pairs_per_s"] > 0
    for path in ("block", "prepared"):  # every float32 path is timed against the reference in the same run
        assert row[f"{path}_max_abs_logit_difference"] < 1e-5 and row[f"{path}_speedup"] > 0
    assert out["fast_dtype"] == str(fast_dtype("cpu")).removeprefix("torch.")
    if out["fast_dtype"] == "bfloat16":  # native bfloat16: its path is timed too, and it is the one reported
        assert 0 < row["prepared_bf16_max_relative_logit_difference"] < 0.02 and out["bf16_gemm_peak_gflops"] > 0
        assert row["speedup"] == row["prepared_bf16_speedup"]
        # the attention kernel the workflow does not choose is timed beside it, on the same pairs
        other = {"fused": "matmul", "matmul": "fused"}[out["bf16_attention_kernel"]]
        assert 0 < row[f"prepared_bf16_{other}_max_relative_logit_difference"] < 0.02
        assert row[f"prepared_bf16_{other}_speedup"] > 0
        assert f"prepared_bf16_{out['bf16_attention_kernel']}_speedup" not in row
    else:
        assert "prepared_bf16_speedup" not in row and row["speedup"] == row["prepared_speedup"]
        assert out["bf16_attention_kernel"] is None and not any(k.startswith("prepared_bf16") for k in row)
        assert row["max_abs_logit_difference"] < 1e-5
    g = grid_cost(4, 30, 10, 10)
    assert g["points"] == 10 and g["grid_seconds"] > 0


def test_gpu_command_runs_without_the_workflow_packages(tmp_path):
    # README "AMES on a GPU": the lent GPU machines have torch, h5py and OpenCV but not faiss, Snakemake, asmk or
    # pillow-heif; the documented command (the overlay merged over config.yaml's benchmark.ames) must import none
    code = f"""
import sys
for m in ("faiss", "snakemake", "asmk", "pillow_heif"):
    sys.modules[m] = None  # an import of any of them fails
import yaml
from retrieval.benchmarks.throughput import ames_benchmark
cfg = yaml.safe_load(open("{REPO}/config/config.yaml"))["benchmark"]["ames"]
cfg |= yaml.safe_load(open("{REPO}/config/benchmark_gpu.yaml"))["benchmark"]["ames"]
assert cfg["sv_dataset"] == "" and cfg["device"] == "cuda"
cfg |= dict(device="cpu", sizes=[[8, 12]], local_dim=16, batch=2, repeats=1, grid_logits_size=[8, 12],
            grid_queries=3, grid_db=20, grid_num_rerank=5, grid_points=4)
ames_benchmark(cfg, "{tmp_path}/out.json")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow_scripts")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert "sv" not in out and out["ames"]["sizes"][0]["speedup"] > 0 and out["grid"]["grid_over_single_point"] > 0
