import pytest
import torch
from matplotlib.image import imread

from fedsim.errors import InvalidSettingError
from fedsim.inversion import save_reconstruction_grid
from fedsim.inversion.plot import CELL_INCHES, DPI

CELL = int(CELL_INCHES * DPI)


def test_grey_grid_has_one_row_of_originals_and_one_of_reconstructions(tmp_path):
    gen = torch.Generator().manual_seed(0)
    orig = torch.rand(3, 1, 8, 8, generator=gen)
    rec = (orig + 0.1 * torch.randn(orig.shape, generator=gen)).clamp(0, 1)

    path = save_reconstruction_grid(orig, rec, tmp_path / "sub" / "grid.png")

    image = imread(path)
    assert path.exists() and path.suffix == ".png"
    assert image.shape == (2 * CELL, 3 * CELL, 4)
    assert image.std() > 0


def test_colour_grid_with_two_titled_rows(tmp_path):
    gen = torch.Generator().manual_seed(1)
    orig = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    rows = [orig.flip(0), torch.zeros_like(orig)]

    path = save_reconstruction_grid(
        orig, rows, tmp_path / "grid.png", titles=["dlg", "idlg"], data_range=(-1.0, 1.0)
    )

    assert imread(path).shape == (3 * CELL, 2 * CELL, 4)


def test_bad_layouts_raise(tmp_path):
    orig = torch.zeros(2, 1, 8, 8)

    with pytest.raises(InvalidSettingError, match="differs"):
        save_reconstruction_grid(orig, torch.zeros(3, 1, 8, 8), tmp_path / "a.png")
    with pytest.raises(InvalidSettingError, match="2 titles for 1"):
        save_reconstruction_grid(orig, orig, tmp_path / "a.png", titles=["a", "b"])
    with pytest.raises(InvalidSettingError, match="C 1 or 3"):
        save_reconstruction_grid(
            torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 8, 8), tmp_path / "a.png"
        )
