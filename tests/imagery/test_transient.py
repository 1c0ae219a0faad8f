"""Outages are told from bad data by their cause, and a cell is done only when every read it needed came whole.

Under heavy HTTP 5xx (and stalls past the client's timeout, and bodies cut short) every failed cell says
``transient:``, every done cell holds exactly the fault-free chip, and rerunning the transient failures ends with
the fault-free block cell for cell.
"""

from __future__ import annotations

import numpy as np
import pytest

from geoprom3e.imagery import DONE, FAILED, ImageryRequest, ReadSettings, fetch_chip_block, is_transient
from geoprom3e.imagery.outcome import failure_kind
from geoprom3e.testing.cogs import scene_lonlat
from geoprom3e.testing.faults import FaultConfig
from tests.imagery.conftest import LOOPBACK, synthetic

WINDOW = "2020-01-01/2020-12-31"


@pytest.fixture
def two_scenes(tmp_path):
    """Two overlapping scenes (the least cloudy one is read; a fallback to the other would change the chip) and
    16 cells on a lattice inside both."""
    root = tmp_path / "s"
    a = synthetic(root, "SCENE_A", seed=1, cloud_cover=3.0, size_px=1280)
    synthetic(root, "SCENE_B", seed=2, cloud_cover=7.0, size_px=1280)
    cols, rows = np.meshgrid(np.arange(4) * 260 + 200, np.arange(4) * 260 + 200)
    lat, lon = scene_lonlat(a, cols.ravel(), rows.ravel())
    return root, lat, lon


def _reference(files, cat, lat, lon):
    files.set_faults(FaultConfig())
    ref = fetch_chip_block(ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW), lat, lon,
                           threads=4)
    assert ref.n_done == len(lat) and set(ref.item_id) == {"SCENE_A"}
    return ref


def test_an_outage_is_recorded_as_transient_and_no_done_chip_differs(two_scenes, served_catalog):
    root, lat, lon = two_scenes
    files, cat = served_catalog(root)
    ref = _reference(files, cat, lat, lon)
    files.set_faults(FaultConfig(error_rate=0.7, error_status=503, seed=11))
    block = fetch_chip_block(ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW), lat, lon,
                             threads=4,
                             settings=ReadSettings(retries=0, backoff_s=0.01, http_timeout_s=2))
    assert files.stats()["faults"]["http503"] > 0
    failed = np.nonzero(block.status == FAILED)[0]
    assert failed.size > 0, "70 % 503s must fail some cells without retries"
    for i in failed:  # each failure names its cause: an HTTP status, never "unreadable COG"
        assert is_transient(block.reason[i]) and "HTTP 503" in block.reason[i], block.reason[i]
        assert not block.chips[i].any()
    for i in np.nonzero(block.status == DONE)[0]:  # done means the fault-free chip, from the same scene
        assert block.item_id[i] == "SCENE_A"
        np.testing.assert_array_equal(block.chips[i], ref.chips[i], err_msg=f"cell {i}: {block.reason[i]}")
    assert set(block.status.tolist()) <= {DONE, FAILED}


def test_rerunning_transient_failures_under_5xx_and_timeouts_ends_with_the_fault_free_chips(two_scenes,
                                                                                             served_catalog):
    root, lat, lon = two_scenes
    files, cat = served_catalog(root)
    ref = _reference(files, cat, lat, lon)
    # seed 32: the first two rolls of the fault dice are a stall and a 503, whatever the thread order
    files.set_faults(FaultConfig(error_rate=0.5, error_status=503, timeout_rate=0.15, timeout_s=1.5,
                                 truncate_rate=0.05, seed=32))
    settings = ReadSettings(retries=1, backoff_s=0.01, http_timeout_s=1)
    req = ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW)
    chips = np.zeros_like(ref.chips)
    reasons = [""] * len(lat)
    todo = np.arange(len(lat))
    rounds, kinds = 0, set()
    while todo.size and rounds < 40:  # what --retry-failed does: revisit every transient failure
        rounds += 1
        block = fetch_chip_block(req, lat[todo], lon[todo], threads=4, settings=settings)
        for k, i in enumerate(todo):
            reasons[i] = block.reason[k]
            if block.status[k] == DONE:
                chips[i] = block.chips[k]
            else:
                kinds.add(failure_kind(block.reason[k]))
        todo = np.array([i for k, i in enumerate(todo) if block.status[k] != DONE and is_transient(block.reason[k])],
                        dtype=int)
    faults = files.stats()["faults"]
    assert faults.get("http503", 0) > 0 and faults.get("timeout", 0) > 0
    # every failure on the way was transient (how many rounds it takes depends on which thread draws which fault,
    # and read retries may absorb them all under some schedules, so the count of rounds is not asserted)
    assert kinds <= {"transient"}, (rounds, kinds)
    assert not todo.size, [reasons[i] for i in todo]
    for i in range(len(lat)):
        np.testing.assert_array_equal(chips[i], ref.chips[i], err_msg=f"cell {i}")
