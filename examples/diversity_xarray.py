"""A short xarray analysis of `geoprom3e diversity-map` outputs.

Make the maps first (from the repository root, with the shared data beside it):

    D=../shared/data
    .venv/bin/geoprom3e diversity-map $D/inat_butterflies_western_us/inat_butterflies_AZ_UT_WA_MT_combined.csv \
        $D/neon_breeding_birds/neon_birds_point_counts.csv.gz --out demo-out/diversity

then run:

    .venv/bin/python examples/diversity_xarray.py demo-out/diversity

It opens the NetCDF with its CF coordinates and CRS, masks cells without records, prints summary
statistics per state-sized box, compares raw and smoothed Shannon diversity, and saves a plot.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rioxarray  # noqa: E402,F401  (registers the .rio accessor)
import xarray as xr  # noqa: E402

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out/diversity")
ds = xr.open_dataset(folder / "diversity.nc", decode_coords="all")

# 1. What is in the file: CF coordinates (cell centres), the grid mapping and the CRS.
print(ds)
print("CRS:", ds.rio.crs, "| transform:", tuple(ds.rio.transform())[:6])
print("sigma:", ds.attrs.get("sigma"), ds.attrs.get("sigma_units"), "|", ds.attrs.get("sigma_note", ""))

# 2. Mask: keep cells that hold records (n_records > 0); NaN already marks cells off the US mask.
has_data = ds.n_records > 0
raw = ds.shannon_raw.where(has_data)
print(f"cells with records: {int(has_data.sum())} of {int(ds.n_records.notnull().sum())} land cells")

# 3. Summary statistics, overall and for a box (Arizona, by lat/lon label slicing; lat is descending).
print("Shannon (raw) over cells with records:", float(raw.mean()), "±", float(raw.std()))
arizona = ds.sel(lat=slice(37.0, 31.3), lon=slice(-114.8, -109.0))
print("Arizona: records", int(arizona.n_records.sum()), "| max richness", float(arizona.richness_raw.max()),
      "| mean smoothed Shannon", float(arizona.shannon.mean()))
by_lat = raw.groupby_bins("lat", bins=np.arange(24.5, 50.0, 2.5)).mean(dim=...)
print("mean raw Shannon per 2.5° latitude band:\n", by_lat.to_series().round(3))

# 4. Does more sampling mean more diversity? (correlation over cells with records)
x = np.log1p(ds.n_records.where(has_data)).values.ravel()
y = raw.values.ravel()
ok = np.isfinite(x) & np.isfinite(y)
print("corr(log1p(n_records), Shannon):", round(float(np.corrcoef(x[ok], y[ok])[0, 1]), 3))

# 5. A plot: smoothed Shannon with the raw cells' values beside it.
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True)
ds.shannon.plot(ax=axes[0], cmap="viridis", cbar_kwargs={"label": "H (smoothed)"})
raw.plot(ax=axes[1], cmap="viridis", cbar_kwargs={"label": "H (raw, cells with records)"})
for ax in axes:
    ax.set_aspect(1 / np.cos(np.deg2rad(37)))
out = folder / "example_shannon.png"
fig.savefig(out, dpi=110)
print("saved", out)
