"""Result.save_json: the Python API's files describe themselves like the CLI's (a provenance block)."""
import json

import torch
from torch import nn

import fastvit_analysis as fa
from fastvit_analysis.common.provenance import environment


def test_api_save_json_records_provenance_and_can_leave_it_out(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    data = (torch.randn(32, 4, dtype=torch.float64), torch.randint(3, (32,)))
    result = fa.hessian_spectrum(model, nn.CrossEntropyLoss(), data, top_k=2, progress=False)
    saved = json.loads(result.save_json(tmp_path / "spectrum.json").read_text())
    provenance = saved.pop("provenance")
    assert saved == json.loads(json.dumps(result.to_dict()))
    expected = environment()
    assert {k: provenance[k] for k in ("package", "torch", "timm", "python", "world_size")} == \
        {k: expected[k] for k in ("package", "torch", "timm", "python", "world_size")}
    assert provenance["created_utc"].endswith("+00:00")
    bare = json.loads(result.save_json(tmp_path / "bare.json", provenance=False).read_text())
    assert "provenance" not in bare
