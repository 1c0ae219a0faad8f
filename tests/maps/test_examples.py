import subprocess
import sys
from pathlib import Path

from geoprom3e.grid import get_grid
from geoprom3e.products.diversity import write_diversity_map
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[2]


def test_xarray_example_runs_on_real_outputs(tmp_path):
    path = shared_path("data", "inat_butterflies_western_us", "inat_butterflies_AZ_UT_WA_MT_combined.csv")
    write_diversity_map([path], tmp_path, get_grid("usa-250x500"), png=False)
    out = subprocess.run([sys.executable, str(REPO / "examples" / "diversity_xarray.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CRS: EPSG:4326" in out.stdout and "Arizona: records" in out.stdout
    assert (tmp_path / "example_shannon.png").stat().st_size > 10_000
