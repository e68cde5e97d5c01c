"""The hardware policy: one device picker, one precision/autocast choice, and a peak that MFU can trust."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from minilm import hardware
from minilm.hardware import Peak


def test_the_device_is_cuda_then_mps_for_one_process_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "mps_available", lambda: False)
    assert hardware.pick_device() == "cpu" and hardware.pick_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA GPU; use device='cpu'"):
        hardware.pick_device("cuda")
    with pytest.raises(RuntimeError, match="no Apple GPU"):
        hardware.pick_device("mps")

    monkeypatch.setattr(hardware, "mps_available", lambda: True)
    assert hardware.pick_device() == "mps"
    assert hardware.pick_device(distributed=True) == "cpu"  # gloo cannot reduce MPS tensors
    with pytest.raises(RuntimeError, match="several processes cannot train on 'mps'"):
        hardware.pick_device("mps", distributed=True)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert hardware.pick_device() == "cuda:0" and hardware.pick_device(local_rank=1) == "cuda:1"
    with pytest.raises(RuntimeError, match="wants GPU 2, but there are 2.*--nproc_per_node=2"):
        hardware.pick_device(local_rank=2)


def test_precision_auto_follows_the_hardware_and_autocast_follows_the_precision():
    native = hardware.bf16_native("cpu")
    assert hardware.choose_precision("cpu") == ("bf16" if native else "fp32")
    assert hardware.choose_precision("cpu", "fp16") == "fp16"
    with pytest.raises(ValueError, match="precision='fp8'; choose one of auto, fp32, bf16, fp16"):
        hardware.choose_precision("cpu", "fp8")
    assert isinstance(hardware.autocast("cpu", "fp32"), contextlib.nullcontext)
    assert isinstance(hardware.autocast("cpu", "bf16"), torch.autocast)
    assert isinstance(hardware.autocast("cpu"), torch.autocast) == native
    with hardware.autocast("cpu", "bf16"):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    assert not hardware.grad_scaler("cpu", "bf16").is_enabled()


def test_flops_are_printed_with_three_significant_digits():
    assert hardware.format_flops(48.73e9) == "48.7 GFLOP/s"
    assert hardware.format_flops(288.4e9) == "288 GFLOP/s"
    assert hardware.format_flops(1.962e12) == "1.96 TFLOP/s"
    assert hardware.format_flops(989e12) == "989 TFLOP/s"
    assert hardware.format_flops(float("nan")) == "n/a"


def test_the_measured_peak_is_the_best_over_sizes_and_skips_sizes_too_slow_to_time(monkeypatch):
    rates = {1024: 100e9, 2048: 300e9, 4096: 200e9}
    calls = []

    def fake(device, dtype, size, seconds=0.1, repeats=3):
        calls.append((size, repeats))
        return rates[size]

    monkeypatch.setattr(hardware, "measure_matmul_flops", fake)
    peak = hardware.measure_peak.__wrapped__("cpu", torch.float32, max_seconds=10.0)
    assert peak.flops == 300e9 and calls == [(1024, 3), (2048, 3), (4096, 3)]
    assert peak.source == "measured here: float32 matmuls of size 1024, 2048, 4096, best of 3 timings each, fastest at 2048"

    calls.clear()  # a slow machine: one 2048 matmul would take 1.7 s at the speed 1024 reached
    rates[1024] = 10e9
    peak = hardware.measure_peak.__wrapped__("cpu", torch.float32)
    assert calls == [(1024, 3)] and peak.flops == 10e9 and "of size 1024, best" in peak.source


def test_a_real_matmul_measurement_gives_a_plausible_speed():
    flops = hardware.measure_matmul_flops("cpu", torch.float32, 128, seconds=0.01, repeats=2)
    assert 1e7 < flops < 1e14


def test_known_gpus_take_their_data_sheet_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    for name, precision, expected in (("NVIDIA H100 80GB HBM3", "bf16", 989e12), ("NVIDIA H100 80GB HBM3", "fp32", 495e12),
                                      ("NVIDIA H100 PCIe", "bf16", 756e12), ("NVIDIA L40S", "bf16", 362e12),
                                      ("NVIDIA L4", "bf16", 121e12), ("NVIDIA A100-SXM4-40GB", "fp16", 312e12)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        peak = hardware.peak_flops("cuda:0", precision)
        assert peak.flops == expected and peak.source.startswith(f"{name} data sheet"), (name, precision, peak)
    assert "float32 as TF32" in hardware.peak_flops("cuda:0", "fp32").source


def test_mfu_can_never_exceed_100_percent():
    measured = Peak(50e9, "measured here")
    assert measured.at_least(40e9) is measured and measured.at_least(float("nan")) is measured
    raised = measured.at_least(60e9).at_least(70e9)
    assert raised.flops == 70e9 and raised.raised_from == 50e9
    assert str(raised) == "70.0 GFLOP/s (measured here; raised from 50.0 GFLOP/s: training ran faster)"
    assert str(measured) == "50.0 GFLOP/s (measured here)"
    assert math.isclose(60e9 / measured.at_least(60e9).flops, 1.0)
