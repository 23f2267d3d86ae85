"""Plots build and render under Agg; the plotted values are loss - min clipped at `clip`."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from fastvit_analysis import interpolate, loss_landscape, trajectory  # noqa: E402
from fastvit_analysis.landscape.grid import LandscapeResult  # noqa: E402
from fastvit_analysis.plot.landscape import contour as plot_contour  # noqa: E402
from fastvit_analysis.plot.landscape import curve as plot_curve  # noqa: E402
from fastvit_analysis.plot.landscape import landscape_values  # noqa: E402
from fastvit_analysis.plot.landscape import surface as plot_surface  # noqa: E402
from fastvit_analysis.plot.landscape import trajectory as plot_trajectory  # noqa: E402


def bowl():
    a = np.linspace(-1, 1, 5)
    z = 100 * np.add.outer(a ** 2, a ** 2) + 3.0
    return LandscapeResult([a, a], z, z, np.full_like(z, np.nan), np.zeros_like(z))


def test_values_relative_and_clipped():
    z = landscape_values(bowl(), clip=42.0)
    assert z.min() == 0.0 and z.max() == 42.0 and z[2, 2] == 0.0 and z[2, 3] == 25.0
    assert landscape_values(bowl(), relative=False, clip=None).max() == 203.0
    with pytest.raises(ValueError, match="key"):
        landscape_values(bowl(), key="foo")


def test_all_plots_render(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    data = (torch.randn(8, 3), torch.randint(0, 2, (8,)))
    ce = nn.CrossEntropyLoss()
    grid = loss_landscape(model, ce, data, steps=3, progress=False)
    line = loss_landscape(model, ce, data, steps=3, dims=1, progress=False)
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = interpolate(model, other, ce, data, steps=3, progress=False)
    ckpts = [{k: v + 0.1 * torch.randn_like(v) for k, v in model.state_dict().items()} for _ in range(4)]
    traj = trajectory(ckpts, ce, data, model=model, steps=3, progress=False)
    figs = [plot_contour(grid), plot_contour(grid, filled=True, clip=None), plot_surface(grid),
            plot_curve(line), plot_curve({"a-b": path, "line": line}, key="accuracy"), plot_trajectory(traj),
            plot_trajectory(trajectory(ckpts, model=model))]
    for k, fig in enumerate(figs):
        fig.savefig(tmp_path / f"{k}.png")
        assert (tmp_path / f"{k}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="2-D"):
        plot_contour(line)
    with pytest.raises(ValueError, match="1-D"):
        plot_curve(grid)
