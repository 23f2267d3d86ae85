"""Benchmark harness: ratios within a group, written as JSON under bench/results/.

Convention for every benchmark:
    benchmark.group = "<what is compared>"          # e.g. "log_amplitude (64,256,32,32)"
    benchmark.extra_info["reference"] = True        # on the eager/reference member of the group
Every member of a group is reported with its median time and `speedup_vs_reference`
(reference median / member median), so ratios come from the same run on the same input.
Results go to bench/results/<module>-<device>.json (override the folder with FASTVIT_BENCH_DIR).
"""
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("FASTVIT_PROGRESS", "0")

import pytest  # noqa: E402


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu} x{torch.get_num_threads()} threads"


def device_tag() -> str:
    return "cuda" if torch.cuda.is_available() else f"cpu{torch.get_num_threads()}"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_sessionfinish(session, exitstatus):
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    by_module: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for bench in bs.benchmarks:
        if not getattr(bench, "stats", None):
            continue
        module = bench.fullname.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        stats = bench.stats
        by_module[module][bench.group or bench.name].append({
            "name": bench.name,
            "median_s": stats.median,
            "mean_s": stats.mean,
            "min_s": stats.min,
            "rounds": stats.rounds,
            "extra_info": dict(bench.extra_info),
        })
    out_dir = Path(os.environ.get("FASTVIT_BENCH_DIR", Path(__file__).parent / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for module, groups in by_module.items():
        for group, members in groups.items():
            ref = next((m for m in members if m["extra_info"].get("reference")), None)
            for m in members:
                if ref is not None and m["median_s"] > 0:
                    m["speedup_vs_reference"] = ref["median_s"] / m["median_s"]
                lines.append(f"{group:<55} {m['name']:<45} {m['median_s'] * 1e3:10.3f} ms"
                             + (f"  x{m['speedup_vs_reference']:.2f} vs {ref['name']}" if ref else ""))
        record = {
            "module": module,
            "device": device_name(),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "groups": groups,
        }
        path = out_dir / f"{module}-{device_tag()}.json"
        path.write_text(json.dumps(record, indent=2, default=str))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and lines:
        reporter.write_sep("=", "fastvit_analysis ratios (speedup = reference median / median)")
        for line in lines:
            reporter.write_line(line)
