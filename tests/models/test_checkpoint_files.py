"""models.load_checkpoint / create read bare state_dict files (as create documents), and the state-dict
comparison helpers are public."""
import pytest
import torch

from fastvit_analysis.models import create, describe_mismatch, load_checkpoint, state_dict_mismatch

TINY = dict(widths=(4, 4, 8, 8), stem_width=4)


def test_bare_state_dict_file_loads_with_model_name(tmp_path):
    model = create("demo_resnet", **TINY)
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    assert set(load_checkpoint(path)["model"]) == set(model.state_dict())
    rebuilt = create(str(path), model_name="demo_resnet", **TINY)
    for (k, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="does not record its model_name; pass model_name="):
        create(str(path))
    with pytest.raises(ValueError, match="does not match model 'demo_resnet'"):
        create(str(path), model_name="demo_resnet", widths=(4, 4, 8, 16), stem_width=4)


def test_other_pickles_are_refused(tmp_path):
    torch.save({"weights": [1, 2]}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="neither a fastvit_analysis checkpoint .* nor a state_dict"):
        load_checkpoint(tmp_path / "x.pt")


def test_mismatch_helpers():
    missing, unexpected = state_dict_mismatch(torch.nn.Linear(2, 1), {"weight": torch.zeros(1, 2), "x": torch.ones(1)})
    assert (missing, unexpected) == (["bias"], ["x"])
    assert describe_mismatch(missing, unexpected) == "1 missing keys (e.g. bias); 1 unexpected keys (e.g. x)"
